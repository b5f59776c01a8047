//! Senders that sign their requests the Standard Webhooks way instead of
//! sending an API key: the signature is checked against the raw body, and a
//! `webhook-id` accepted once is refused again until it could no longer be
//! replayed (twice the timestamp tolerance, plus a margin for clock
//! differences), across every api node.

use actix_web::HttpRequest;
use notify_auth::webhook::REPLAY_TTL_SECS;
use notify_auth::{ApiKeyId, SignatureError, SignedHeaders};
use notify_bus::replay;

use crate::error::ApiError;
use crate::state::AppState;

/// The `webhook-*` headers, when a request carries any of them.
pub struct Signed {
    id: String,
    timestamp: String,
    signature: String,
}

impl Signed {
    /// None when the request is not signed; an error when it is only partly.
    pub fn from_headers(req: &HttpRequest) -> Result<Option<Self>, ApiError> {
        let headers = req.headers();
        let names = ["webhook-id", "webhook-timestamp", "webhook-signature"];
        if !names.iter().any(|n| headers.contains_key(*n)) {
            return Ok(None);
        }
        let get = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
                .ok_or(ApiError::InvalidSignature(
                    "webhook-id, webhook-timestamp and webhook-signature must all be sent",
                ))
        };
        Ok(Some(Self {
            id: get(names[0])?,
            timestamp: get(names[1])?,
            signature: get(names[2])?,
        }))
    }

    /// Checks the signature over `body`; returns the sender and the claim
    /// that refuses a replay once taken.
    pub fn verify(&self, state: &AppState, body: &[u8]) -> Result<(ApiKeyId, Once), ApiError> {
        let headers = SignedHeaders {
            id: &self.id,
            timestamp: &self.timestamp,
            signature: &self.signature,
        };
        let sender = state
            .webhook_secrets
            .verify(headers, body, crate::unix_now())
            .map_err(|e| match e {
                SignatureError::InvalidId => ApiError::InvalidWebhookId,
                SignatureError::InvalidTimestamp => ApiError::InvalidWebhookTimestamp,
                SignatureError::InvalidSignature => {
                    ApiError::InvalidSignature("no valid v1 signature in webhook-signature")
                }
            })?;
        let key = state.channels.webhook_id(sender, &self.id);
        Ok((ApiKeyId(format!("signed:{sender}")), Once { key }))
    }
}

/// The right to process one `webhook-id`.
pub struct Once {
    key: String,
}

impl Once {
    /// Takes the id; a replay is refused. Fails closed when Redis is away.
    pub async fn claim(&self, state: &AppState) -> Result<(), ApiError> {
        match replay::claim_once(&state.redis, &self.key, REPLAY_TTL_SECS).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(ApiError::WebhookReplayed),
            Err(error) => {
                tracing::warn!(%error, "could not check webhook replays");
                Err(ApiError::Unavailable)
            }
        }
    }

    /// Gives the id back after a failure, so the sender's retry is accepted.
    pub async fn release(&self, state: &AppState) {
        if let Err(error) = replay::release(&state.redis, &self.key).await {
            tracing::warn!(%error, "could not release a webhook id; its retry will be refused for {REPLAY_TTL_SECS} s");
        }
    }
}
