//! `POST /api/dev/token`: a token for any user who asks, for demos and
//! local clusters (the bell page signs in with it). Only with
//! `DEV_TOKENS=true`, which is off by default; when off the path answers
//! like any unknown one.

use actix_web::{web, HttpRequest, HttpResponse};
use notify_auth::jwt::{sign_hs256, valid_user_id};
use notify_auth::{Claims, JwtConfig, JwtKey};
use serde::Deserialize;
use serde_json::json;

use crate::body;
use crate::error::ApiError;
use crate::state::AppState;

/// Lifetime of a token when the request names none: an hour, so a demo
/// page shows token refresh at work without waiting a day.
const DEFAULT_TTL_SECS: u64 = 3600;
/// Shortest lifetime a request may ask for (tests of refresh use it).
const MIN_TTL_SECS: u64 = 5;

/// What signs development tokens: the api's own HS256 secret.
#[derive(Clone)]
pub struct DevTokens {
    secret: Vec<u8>,
    max_ttl_secs: u64,
}

impl DevTokens {
    /// `None` unless `enabled`; an error when enabled without an HS256
    /// secret to sign with.
    pub fn new(enabled: bool, jwt: &JwtConfig) -> anyhow::Result<Option<DevTokens>> {
        if !enabled {
            return Ok(None);
        }
        let JwtKey::Secret(secret) = &jwt.key else {
            anyhow::bail!("DEV_TOKENS=true needs JWT_SECRET (it signs HS256 tokens only)");
        };
        tracing::warn!("DEV_TOKENS is on: anyone who reaches the api can sign in as any user");
        Ok(Some(DevTokens {
            secret: secret.clone(),
            max_ttl_secs: jwt.max_lifetime.as_secs(),
        }))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    user_id: String,
    ttl_secs: Option<u64>,
}

/// `{"user_id":"alice","ttl_secs"?:3600}` → `{"token","user_id","expires_at"}`.
pub async fn token(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let Some(dev) = &state.dev_tokens else {
        return Err(ApiError::NotFound);
    };
    let raw = body::read(&req, payload, 1024).await?;
    let Request { user_id, ttl_secs } = body::parse_json(&raw)?;
    if !valid_user_id(&user_id) {
        return Err(ApiError::InvalidField(
            "user_id must be 1-191 characters, without control characters or surrounding spaces"
                .into(),
        ));
    }
    let ttl = ttl_secs.unwrap_or(DEFAULT_TTL_SECS.min(dev.max_ttl_secs));
    if !(MIN_TTL_SECS..=dev.max_ttl_secs).contains(&ttl) {
        return Err(ApiError::InvalidField(format!(
            "ttl_secs must be {MIN_TTL_SECS}-{}",
            dev.max_ttl_secs
        )));
    }
    let (token, expires_at) =
        sign_for(&dev.secret, &user_id, ttl, Vec::new()).map_err(|error| {
            tracing::error!(%error, "could not sign a development token");
            ApiError::Internal
        })?;
    Ok(HttpResponse::Ok().json(json!({
        "token": token,
        "user_id": user_id,
        "expires_at": expires_at,
    })))
}

/// An HS256 token for `user`, valid `ttl_secs` from now, with a random
/// `jti` (so it can be revoked alone); the token and its `exp`. Also the
/// `token` command's.
pub fn sign_for(
    secret: &[u8],
    user: &str,
    ttl_secs: u64,
    roles: Vec<String>,
) -> anyhow::Result<(String, u64)> {
    let now = crate::unix_now();
    let claims = Claims {
        sub: user.to_owned(),
        exp: now + ttl_secs,
        iat: Some(now),
        jti: Some(format!("{:032x}", rand::random::<u128>())),
        // Signed under `roles`; a service reading another claim
        // (JWT_ROLES_CLAIM) sees none.
        roles,
    };
    Ok((sign_hs256(secret, &claims)?, claims.exp))
}
