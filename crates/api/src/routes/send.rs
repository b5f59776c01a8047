//! Server-to-server sending: `POST /v1/notifications` (many recipients) and
//! `POST /webhook/notify` (the single-recipient form existing senders use).
//! Both validate fully before touching MySQL, store every row in one
//! multi-row INSERT, and publish one event per recipient after the commit.

use actix_web::{web, HttpRequest, HttpResponse};
use notify_auth::ApiKeyId;
use notify_store::{Claim, IdempotencyKey};
use sha2::{Digest, Sha256};

use crate::auth::Credentials;
use crate::batcher::{Reply, Submission};
use crate::body::{self, MAX_BODY_BYTES};
use crate::error::ApiError;
use crate::signed::Once;
use crate::state::AppState;
use crate::validation::{
    body_api_key, Content, SendRequest, WebhookRequest, MAX_IDEMPOTENCY_KEY_CHARS,
};

pub async fn send_many(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let credentials = Credentials::from_headers(&req, &state)?;
    credentials.required()?;
    let idempotency_key = idempotency_key(&req)?;
    let raw = body::read(&req, payload, MAX_BODY_BYTES).await?;
    let (sender, once) = credentials.identify(&state, &raw, None)?;
    let request: SendRequest = body::parse_json(&raw)?;
    let content = request.check()?;
    let body = store_and_publish(
        &state,
        &sender,
        idempotency_key.map(|k| (k, request_hash(&req, &raw))),
        request.recipients.clone(),
        content,
        Reply::Ids,
        once,
    )
    .await?;
    Ok(accepted(body))
}

pub async fn webhook(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    // A key in the headers is checked before the body is read; senders that
    // can only put it in the body are checked once it is read, before the
    // rest of the body is parsed.
    let credentials = Credentials::from_headers(&req, &state)?;
    let idempotency_key = idempotency_key(&req)?;
    let raw = body::read(&req, payload, MAX_BODY_BYTES).await?;
    let body_key = credentials.in_body().then(|| body_api_key(&raw)).flatten();
    let (sender, once) = credentials.identify(&state, &raw, body_key.as_deref())?;
    let request: WebhookRequest = body::parse_json(&raw)?;
    let content = request.check()?;
    let body = store_and_publish(
        &state,
        &sender,
        idempotency_key.map(|k| (k, request_hash(&req, &raw))),
        vec![request.recipient_id.clone()],
        content,
        Reply::Id,
        once,
    )
    .await?;
    Ok(accepted(body))
}

fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .map_err(|_| ApiError::InvalidIdempotencyKey)?;
    if key.is_empty()
        || key.len() > MAX_IDEMPOTENCY_KEY_CHARS
        || !key.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(ApiError::InvalidIdempotencyKey);
    }
    Ok(Some(key.to_owned()))
}

/// Identifies "the same request": same route and byte-identical body.
fn request_hash(req: &HttpRequest, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(req.path().as_bytes());
    hasher.update([0]);
    hasher.update(body);
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn accepted(body: String) -> HttpResponse {
    HttpResponse::Accepted()
        .content_type("application/json")
        .body(body)
}

/// Claims the webhook id of a signed request (if any), then stores; a
/// failure gives the id back so the sender's retry is not taken for a
/// replay.
async fn store_and_publish(
    state: &AppState,
    sender: &ApiKeyId,
    idempotency: Option<(String, String)>,
    recipients: Vec<String>,
    content: Content<'_>,
    reply: Reply,
    once: Option<Once>,
) -> Result<String, ApiError> {
    if let Some(once) = &once {
        once.claim(state).await?;
    }
    let result = store(state, sender, idempotency, recipients, content, reply).await;
    if let (Err(_), Some(once)) = (&result, &once) {
        once.release(state).await;
    }
    result
}

/// Claims the idempotency key (if any), then hands the rows to the batcher,
/// which stores them in one transaction with other requests' rows and
/// publishes after the commit. Returns the response body, which is also what
/// an idempotent retry replays.
async fn store(
    state: &AppState,
    sender: &ApiKeyId,
    idempotency: Option<(String, String)>,
    recipients: Vec<String>,
    content: Content<'_>,
    reply: Reply,
) -> Result<String, ApiError> {
    let source = sender.0.as_str();
    if let Some((key, hash)) = &idempotency {
        let mut conn = notify_store::pool::get(&state.db).await?;
        match IdempotencyKey::claim(&mut conn, source, key, hash).await? {
            Claim::Fresh => {}
            Claim::Replay(body) => return Ok(body),
            Claim::InProgress => return Err(ApiError::IdempotencyInProgress),
            Claim::Mismatch => return Err(ApiError::IdempotencyMismatch),
            Claim::Expired => return Err(ApiError::IdempotencyExpired),
        }
    }
    let key = idempotency.map(|(key, _)| key);
    let submission = Submission {
        recipients,
        kind: content.kind.to_owned(),
        title: content.title.to_owned(),
        message: content.message.to_owned(),
        link: content.link.map(str::to_owned),
        metadata: content.metadata.map(str::to_owned),
        source: source.to_owned(),
        idempotency_key: key.clone(),
        reply,
    };
    match state.batcher.submit(submission).await {
        Ok(body) => Ok(body),
        Err(error) => {
            if let Some(key) = key {
                // Best effort: if this fails too, the claim expires by itself.
                if let Ok(mut conn) = notify_store::pool::get(&state.db).await {
                    let _ = IdempotencyKey::release(&mut conn, source, &key).await;
                }
            }
            Err(error.into())
        }
    }
}
