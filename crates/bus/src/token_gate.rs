//! The one check every user token passes, in the api and on the gateways:
//! its signature and claims (notify-auth), then the revocations recorded in
//! Redis.

use notify_auth::{AuthError, Claims, JwtVerifier};
use notify_protocol::ChannelNames;

use crate::{revocation, RedisPool};

/// Why a token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    Expired,
    Invalid,
    Revoked,
}

impl TokenRefusal {
    /// The stable error code.
    pub fn code(self) -> &'static str {
        match self {
            TokenRefusal::Expired => "token_expired",
            TokenRefusal::Invalid => "invalid_token",
            TokenRefusal::Revoked => "token_revoked",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            TokenRefusal::Expired => "token expired",
            TokenRefusal::Invalid => "invalid token",
            TokenRefusal::Revoked => "token revoked",
        }
    }
}

impl From<AuthError> for TokenRefusal {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Expired => TokenRefusal::Expired,
            AuthError::Invalid => TokenRefusal::Invalid,
        }
    }
}

pub struct TokenGate {
    jwt: JwtVerifier,
    /// Pooled connections (never a subscriber's) for revocation checks.
    redis: RedisPool,
    channels: ChannelNames,
}

impl TokenGate {
    pub fn new(jwt: JwtVerifier, redis: RedisPool, channels: ChannelNames) -> Self {
        Self {
            jwt,
            redis,
            channels,
        }
    }

    pub fn jwt(&self) -> &JwtVerifier {
        &self.jwt
    }

    /// Verifies a token and checks that it was not revoked.
    pub async fn admit(&self, token: &str) -> Result<Claims, TokenRefusal> {
        let claims = self.jwt.verify(token).await?;
        self.check_revoked(&claims.sub, claims.jti.as_deref(), claims.iat)
            .await?;
        Ok(claims)
    }

    /// Fails open: Redis being away does not lock users out (the token's
    /// signature and expiry were checked, and no revocation can be recorded
    /// meanwhile either); each such pass is logged.
    pub async fn check_revoked(
        &self,
        user: &str,
        jti: Option<&str>,
        iat: Option<u64>,
    ) -> Result<(), TokenRefusal> {
        match revocation::check(&self.redis, &self.channels, user, jti, iat).await {
            Ok(None) => Ok(()),
            Ok(Some(_)) => Err(TokenRefusal::Revoked),
            Err(error) => {
                tracing::warn!(%error, "could not check token revocations");
                Ok(())
            }
        }
    }
}
