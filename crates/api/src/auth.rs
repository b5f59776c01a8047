//! Request authentication: API keys for servers, JWTs for users.

use std::future::{ready, Ready};

use actix_web::http::header::{self, HeaderMap};
use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use notify_auth::ApiKeyId;

use crate::error::ApiError;
use crate::state::AppState;

/// The user a JWT in `Authorization: Bearer` names.
pub struct AuthUser(pub String);

impl FromRequest for AuthUser {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate_user(req))
    }
}

fn authenticate_user(req: &HttpRequest) -> Result<AuthUser, ApiError> {
    let state = app_state(req)?;
    let token = bearer(req.headers()).ok_or(ApiError::MissingCredentials(
        "send a user token as Authorization: Bearer <jwt>",
    ))?;
    let user = state.jwt.verify(token)?.sub;
    state.limits.check_user(&user)?;
    Ok(AuthUser(user))
}

/// The API key from `Authorization: Bearer` or `X-Api-Key`, if either header
/// is present; an invalid one is an error even where the body may carry one.
pub fn api_key_from_headers(
    req: &HttpRequest,
    state: &AppState,
) -> Result<Option<ApiKeyId>, ApiError> {
    let presented = req
        .headers()
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| bearer(req.headers()));
    match presented {
        None => Ok(None),
        Some(key) => state
            .api_keys
            .verify(key)
            .map(Some)
            .ok_or(ApiError::InvalidApiKey),
    }
}

pub fn require_api_key(req: &HttpRequest, state: &AppState) -> Result<ApiKeyId, ApiError> {
    let key = api_key_from_headers(req, state)?.ok_or(ApiError::MissingCredentials(
        "send an API key as Authorization: Bearer <key> or X-Api-Key",
    ))?;
    state.limits.check_key(&key.0)?;
    Ok(key)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn app_state(req: &HttpRequest) -> Result<&AppState, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .map(|d| d.get_ref())
        .ok_or(ApiError::Internal)
}
