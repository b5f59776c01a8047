//! Verification of the JWTs that identify end users.
//!
//! The algorithm is pinned (HS256 with a shared secret), so `alg: none` and
//! algorithm-confusion tokens are refused before any signature check. `exp`
//! is required; `iss` and `aud` are checked when configured.

use jsonwebtoken::{
    decode, errors::ErrorKind, Algorithm, DecodingKey, EncodingKey, Header, Validation,
};
use serde::{Deserialize, Serialize};

/// The user id (`sub`) longer than this is refused: it becomes a column value
/// and a Redis channel name.
pub const MAX_USER_ID_LEN: usize = 191;

/// What the services read from a token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
}

/// Why a token was refused. Messages stay short on purpose: a client learns
/// that its token is unusable, not which check it failed beyond expiry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("token expired")]
    Expired,
    #[error("invalid token")]
    Invalid,
}

#[derive(Clone)]
pub struct JwtConfig {
    pub secret: Vec<u8>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
}

#[derive(Clone)]
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl JwtVerifier {
    pub fn new(config: &JwtConfig) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        match &config.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            // Without a configured audience the library would refuse every
            // token that carries `aud`; identity providers often add one.
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &config.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        Self {
            key: DecodingKey::from_secret(&config.secret),
            validation,
        }
    }

    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let data =
            decode::<Claims>(token, &self.key, &self.validation).map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                _ => AuthError::Invalid,
            })?;
        let sub = &data.claims.sub;
        if !valid_user_id(sub) {
            return Err(AuthError::Invalid);
        }
        Ok(data.claims)
    }
}

/// A user id is 1..=191 characters, with no control characters and no
/// surrounding whitespace (MySQL compares trailing spaces as equal).
pub fn valid_user_id(id: &str) -> bool {
    !id.is_empty()
        && id.chars().count() <= MAX_USER_ID_LEN
        && id.trim() == id
        && !id.chars().any(char::is_control)
}

/// Signs a development token. Used by the `token` command of the api and by
/// tests; production tokens come from the identity provider.
pub fn sign_hs256(secret: &[u8], claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn verifier() -> JwtVerifier {
        JwtVerifier::new(&JwtConfig {
            secret: b"secret".to_vec(),
            issuer: None,
            audience: None,
        })
    }

    fn claims(sub: &str, exp: u64) -> Claims {
        Claims {
            sub: sub.into(),
            exp,
            jti: None,
        }
    }

    #[test]
    fn accepts_valid_token() {
        let token = sign_hs256(b"secret", &claims("alice", now() + 60)).unwrap();
        assert_eq!(verifier().verify(&token).unwrap().sub, "alice");
    }

    #[test]
    fn refuses_expired_forged_and_unsigned() {
        let v = verifier();
        let expired = sign_hs256(b"secret", &claims("alice", now() - 3600)).unwrap();
        assert_eq!(v.verify(&expired).unwrap_err(), AuthError::Expired);
        let forged = sign_hs256(b"other", &claims("alice", now() + 60)).unwrap();
        assert_eq!(v.verify(&forged).unwrap_err(), AuthError::Invalid);
        // alg: none, unsigned
        let none =
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbGljZSIsImV4cCI6OTk5OTk5OTk5OX0.";
        assert_eq!(v.verify(none).unwrap_err(), AuthError::Invalid);
        assert_eq!(v.verify("garbage").unwrap_err(), AuthError::Invalid);
    }

    #[test]
    fn refuses_bad_subjects() {
        let v = verifier();
        for sub in ["", " alice", "a\nb", &"x".repeat(192)] {
            let token = sign_hs256(b"secret", &claims(sub, now() + 60)).unwrap();
            assert_eq!(v.verify(&token).unwrap_err(), AuthError::Invalid, "{sub:?}");
        }
    }

    #[test]
    fn checks_audience_when_configured() {
        let v = JwtVerifier::new(&JwtConfig {
            secret: b"secret".to_vec(),
            issuer: Some("idp".into()),
            audience: Some("notify".into()),
        });
        let sign = |claims: serde_json::Value| {
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(b"secret"),
            )
            .unwrap()
        };
        let exp = now() + 60;
        for refused in [
            serde_json::json!({"sub": "a", "exp": exp}),
            serde_json::json!({"sub": "a", "exp": exp, "iss": "idp"}),
            serde_json::json!({"sub": "a", "exp": exp, "iss": "idp", "aud": "other"}),
            serde_json::json!({"sub": "a", "exp": exp, "iss": "evil", "aud": "notify"}),
        ] {
            assert_eq!(
                v.verify(&sign(refused.clone())).unwrap_err(),
                AuthError::Invalid,
                "{refused}"
            );
        }
        let good = sign(serde_json::json!({"sub": "a", "exp": exp, "iss": "idp", "aud": "notify"}));
        assert_eq!(v.verify(&good).unwrap().sub, "a");
    }

    #[test]
    fn checks_not_before() {
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"sub": "a", "exp": now() + 600, "nbf": now() + 300}),
            &EncodingKey::from_secret(b"secret"),
        )
        .unwrap();
        assert_eq!(verifier().verify(&token).unwrap_err(), AuthError::Invalid);
    }

    #[test]
    fn ignores_audience_when_not_configured() {
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"sub": "a", "exp": now() + 600, "aud": "anything"}),
            &EncodingKey::from_secret(b"secret"),
        )
        .unwrap();
        assert_eq!(verifier().verify(&token).unwrap().sub, "a");
    }
}
