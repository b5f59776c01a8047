//! Request authentication: API keys for servers, JWTs for users.
//!
//! Wrong API keys and signatures are counted per client address; a client
//! over its limit is refused (429) before anything it sends is compared,
//! and before its body is read, so it can neither go on guessing nor tell a
//! right key from a wrong one.

use std::net::IpAddr;

use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use notify_auth::ApiKeyId;

use crate::error::ApiError;
use crate::signed::{Once, Signed};
use crate::state::AppState;
use notify_service::client::client_addr;
use notify_service::http::bearer;

/// The user a JWT in `Authorization: Bearer` names.
pub struct AuthUser(pub String);

impl FromRequest for AuthUser {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { authenticate_user(&req).await })
    }
}

async fn authenticate_user(req: &HttpRequest) -> Result<AuthUser, ApiError> {
    let state = app_state(req)?;
    let token = bearer(req.headers()).ok_or(ApiError::MissingCredentials(
        "send a user token as Authorization: Bearer <jwt>",
    ))?;
    let claims = state.gate.admit(token).await?;
    state.limits.check_user(&claims.sub)?;
    Ok(AuthUser(claims.sub))
}

/// The client a sender's request comes from, once it is known not to be
/// over its failed-credential limit.
fn allowed_client(req: &HttpRequest, state: &AppState) -> Result<IpAddr, ApiError> {
    let client = client_addr(req, &state.trusted_proxies);
    state.limits.check_client(client)?;
    Ok(client)
}

/// The API key from `Authorization: Bearer` or `X-Api-Key`, if either header
/// is present; an invalid one is an error even where the body may carry one.
fn api_key_from_headers(
    req: &HttpRequest,
    state: &AppState,
    client: IpAddr,
) -> Result<Option<ApiKeyId>, ApiError> {
    let presented = req
        .headers()
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| bearer(req.headers()));
    match presented {
        None => Ok(None),
        Some(key) => verify_key(state, client, key).map(Some),
    }
}

fn verify_key(state: &AppState, client: IpAddr, key: &str) -> Result<ApiKeyId, ApiError> {
    state
        .api_keys
        .verify(key)
        .ok_or_else(|| state.limits.failed(client, ApiError::InvalidApiKey))
}

pub fn require_api_key(req: &HttpRequest, state: &AppState) -> Result<ApiKeyId, ApiError> {
    let client = allowed_client(req, state)?;
    let key = api_key_from_headers(req, state, client)?.ok_or(ApiError::MissingCredentials(
        "send an API key as Authorization: Bearer <key> or X-Api-Key",
    ))?;
    state.limits.check_key(&key.0)?;
    Ok(key)
}

/// How a sending server proves who it is: an API key in the headers (checked
/// before the body is read), a Standard Webhooks signature (checked against
/// the body once read), or, on the webhook route only, an API key in the
/// body.
pub struct Credentials {
    presented: Presented,
    client: IpAddr,
}

enum Presented {
    Key(ApiKeyId),
    Signed(Signed),
    Absent,
}

const NO_CREDENTIALS: &str = "send an API key as Authorization: Bearer <key> or X-Api-Key, or sign the request with webhook-id, webhook-timestamp and webhook-signature";

impl Credentials {
    pub fn from_headers(req: &HttpRequest, state: &AppState) -> Result<Self, ApiError> {
        let client = allowed_client(req, state)?;
        let presented = match Signed::from_headers(req)? {
            Some(signed) => Presented::Signed(signed),
            None => match api_key_from_headers(req, state, client)? {
                Some(key) => Presented::Key(key),
                None => Presented::Absent,
            },
        };
        Ok(Self { presented, client })
    }

    /// Refuses a request that names no sender in its headers, before its
    /// body is read (for endpoints that take no key in the body).
    pub fn required(&self) -> Result<(), ApiError> {
        match self.presented {
            Presented::Absent => Err(ApiError::MissingCredentials(NO_CREDENTIALS)),
            _ => Ok(()),
        }
    }

    /// Whether the sender can only be the API key in the body.
    pub fn in_body(&self) -> bool {
        matches!(self.presented, Presented::Absent)
    }

    /// The sender, once the body is known, after its rate limit; for a
    /// signed request also the claim on its `webhook-id`.
    pub fn identify(
        self,
        state: &AppState,
        body: &[u8],
        body_key: Option<&str>,
    ) -> Result<(ApiKeyId, Option<Once>), ApiError> {
        let (sender, once) = match self.presented {
            Presented::Key(key) => (key, None),
            Presented::Signed(signed) => {
                let (sender, once) = signed.verify(state, body).map_err(|error| match error {
                    ApiError::InvalidSignature(_) => state.limits.failed(self.client, error),
                    other => other,
                })?;
                (sender, Some(once))
            }
            Presented::Absent => match body_key {
                Some(key) => (verify_key(state, self.client, key)?, None),
                None => return Err(ApiError::MissingCredentials(NO_CREDENTIALS)),
            },
        };
        state.limits.check_key(&sender.0)?;
        Ok((sender, once))
    }
}

fn app_state(req: &HttpRequest) -> Result<&AppState, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .map(|d| d.get_ref())
        .ok_or(ApiError::Internal)
}
