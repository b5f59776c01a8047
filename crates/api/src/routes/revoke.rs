//! Revocation: `POST /v1/users/{id}/disconnect` closes every connection of a
//! user and refuses the tokens the user holds now; `POST /v1/tokens/revoke`
//! does the same for one token, by its `jti`. Both take effect on every
//! gateway through Redis and are refused at connect until the tokens would
//! have expired anyway.

use actix_web::{web, HttpRequest, HttpResponse};
use notify_auth::jwt::{valid_user_id, LONGEST_LIFETIME_SECS};
use notify_bus::revocation;
use serde::Deserialize;
use serde_json::json;

use crate::auth::require_api_key;
use crate::body::{self, MAX_BODY_BYTES};
use crate::error::ApiError;
use crate::state::AppState;

pub const MAX_JTI_CHARS: usize = 255;

pub async fn disconnect_user(
    req: HttpRequest,
    user: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_api_key(&req, &state)?;
    let user = user.into_inner();
    if !valid_user_id(&user) {
        return Err(ApiError::InvalidField(
            "the user id must be 1 to 191 characters without control characters or surrounding spaces".into(),
        ));
    }
    let now = crate::unix_now();
    let ttl = state.gate.jwt().user_revocation_ttl().as_secs();
    revocation::disconnect_user(&state.redis, &state.channels, &user, now, ttl)
        .await
        .map_err(redis_unavailable)?;
    tracing::info!("user disconnected by request");
    Ok(HttpResponse::Ok().json(json!({"user_id": user, "revoked_at": now})))
}

#[derive(Deserialize)]
struct RevokeRequest {
    jti: String,
    /// The token's `exp`, when known: the revocation lasts until then.
    exp: Option<u64>,
}

pub async fn revoke_token(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_api_key(&req, &state)?;
    let raw = body::read(&req, payload, MAX_BODY_BYTES).await?;
    let request: RevokeRequest = body::parse_json(&raw)?;
    let jti = request.jti;
    if jti.is_empty() || jti.chars().count() > MAX_JTI_CHARS || jti.chars().any(char::is_control) {
        return Err(ApiError::InvalidField(format!(
            "jti must be 1 to {MAX_JTI_CHARS} characters without control characters"
        )));
    }
    let now = crate::unix_now();
    let ttl = state
        .gate
        .jwt()
        .token_revocation_ttl(request.exp, now)
        .as_secs()
        .min(LONGEST_LIFETIME_SECS);
    revocation::revoke_token(&state.redis, &state.channels, &jti, ttl)
        .await
        .map_err(redis_unavailable)?;
    Ok(HttpResponse::Ok().json(json!({"jti": jti, "revoked_for_secs": ttl})))
}

fn redis_unavailable(error: notify_bus::BusError) -> ApiError {
    tracing::warn!(%error, "could not record a revocation");
    ApiError::Unavailable
}
