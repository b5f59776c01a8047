//! Server-to-server sending: `POST /v1/notifications` (many recipients) and
//! `POST /webhook/notify` (the single-recipient form existing senders use).
//! Both validate fully before touching MySQL, store every row in one
//! multi-row INSERT, and publish one event per recipient after the commit.

use std::borrow::Cow;

use actix_web::{web, HttpRequest, HttpResponse};
use notify_auth::{jwt::valid_user_id, ApiKeyId};
use notify_store::{Claim, IdempotencyKey};
use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::auth::Credentials;
use crate::batcher::{Reply, Submission};
use crate::body::{self, MAX_BODY_BYTES};
use crate::error::ApiError;
use crate::signed::Once;
use crate::state::AppState;

pub const MAX_RECIPIENTS: usize = 1000;
pub const MAX_TITLE_CHARS: usize = 255;
pub const MAX_MESSAGE_CHARS: usize = 10_000;
pub const MAX_TYPE_CHARS: usize = 64;
pub const MAX_LINK_CHARS: usize = 2048;
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
/// Deepest nesting of objects and arrays in metadata, the object itself
/// being the first level.
pub const MAX_METADATA_DEPTH: usize = 16;
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 200;
const DEFAULT_TYPE: &str = "generic";

#[derive(Deserialize)]
struct SendRequest {
    recipients: Vec<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    title: String,
    message: String,
    link: Option<String>,
    metadata: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WebhookRequest {
    recipient_id: String,
    message: String,
    title: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    link: Option<String>,
    metadata: Option<Box<RawValue>>,
}

/// Only the key of a webhook body that carries its API key, read before
/// anything else of the body is looked at.
#[derive(Deserialize)]
struct BodyKey<'a> {
    #[serde(rename = "apiKey", borrow)]
    api_key: Option<Cow<'a, str>>,
}

/// The `apiKey` of a webhook body; none when the body is not a JSON object
/// with a string there (the sender is then missing, whatever else is
/// wrong with the body).
fn body_api_key(body: &[u8]) -> Option<Cow<'_, str>> {
    serde_json::from_slice::<BodyKey>(body).ok()?.api_key
}

/// A request that passed every check.
struct Content<'a> {
    kind: &'a str,
    title: &'a str,
    message: &'a str,
    link: Option<&'a str>,
    metadata: Option<&'a str>,
}

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

impl SendRequest {
    fn check(&self) -> Result<Content<'_>, ApiError> {
        if self.recipients.is_empty() {
            return Err(ApiError::InvalidField(
                "recipients must not be empty".into(),
            ));
        }
        if self.recipients.len() > MAX_RECIPIENTS {
            return Err(ApiError::TooManyRecipients(MAX_RECIPIENTS));
        }
        let mut seen = std::collections::HashSet::with_capacity(self.recipients.len());
        for (i, recipient) in self.recipients.iter().enumerate() {
            if !valid_user_id(recipient) {
                return Err(ApiError::InvalidField(format!(
                    "recipients[{i}] must be 1 to 191 characters without control characters or surrounding spaces"
                )));
            }
            if !seen.insert(recipient.as_str()) {
                return Err(ApiError::InvalidField(format!(
                    "recipients[{i}] is a duplicate"
                )));
            }
        }
        validate(
            self.kind.as_deref(),
            Some(&self.title),
            &self.message,
            self.link.as_deref(),
            self.metadata.as_deref(),
        )
    }
}

impl WebhookRequest {
    fn check(&self) -> Result<Content<'_>, ApiError> {
        if !valid_user_id(&self.recipient_id) {
            return Err(ApiError::InvalidField(
                "recipientId must be 1 to 191 characters without control characters or surrounding spaces".into(),
            ));
        }
        validate(
            self.kind.as_deref(),
            self.title.as_deref(),
            &self.message,
            self.link.as_deref(),
            self.metadata.as_deref(),
        )
    }
}

/// Parses and validates a `/v1/notifications` body exactly as the route
/// does, without storing anything: for fuzzing.
pub fn check_send_body(body: &[u8]) -> Result<(), ApiError> {
    body::parse_json::<SendRequest>(body)?.check().map(|_| ())
}

/// Parses and validates a `/webhook/notify` body exactly as the route does,
/// without storing anything: for fuzzing.
pub fn check_webhook_body(body: &[u8]) -> Result<(), ApiError> {
    body::parse_json::<WebhookRequest>(body)?
        .check()
        .map(|_| ())
}

fn validate<'a>(
    kind: Option<&'a str>,
    title: Option<&'a str>,
    message: &'a str,
    link: Option<&'a str>,
    metadata: Option<&'a RawValue>,
) -> Result<Content<'a>, ApiError> {
    let kind = kind.unwrap_or(DEFAULT_TYPE);
    if kind.is_empty()
        || kind.len() > MAX_TYPE_CHARS
        || !kind
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b))
    {
        return Err(ApiError::InvalidField(format!(
            "type must be 1 to {MAX_TYPE_CHARS} characters of letters, digits, '_', '.', ':' or '-'"
        )));
    }
    let title = title.unwrap_or("");
    if title.chars().count() > MAX_TITLE_CHARS {
        return Err(ApiError::InvalidField(format!(
            "title must be at most {MAX_TITLE_CHARS} characters"
        )));
    }
    if message.trim().is_empty() {
        return Err(ApiError::InvalidField("message must not be empty".into()));
    }
    if message.chars().count() > MAX_MESSAGE_CHARS {
        return Err(ApiError::InvalidField(format!(
            "message must be at most {MAX_MESSAGE_CHARS} characters"
        )));
    }
    if let Some(link) = link {
        if link.is_empty()
            || link.chars().count() > MAX_LINK_CHARS
            || link.chars().any(char::is_control)
        {
            return Err(ApiError::InvalidField(format!(
                "link must be 1 to {MAX_LINK_CHARS} characters without control characters"
            )));
        }
    }
    // `"metadata": null` arrives as None; anything else must be an object.
    let metadata = metadata.map(RawValue::get);
    if let Some(metadata) = metadata {
        if !metadata.starts_with('{') {
            return Err(ApiError::InvalidField(
                "metadata must be a JSON object".into(),
            ));
        }
        if metadata.len() > MAX_METADATA_BYTES {
            return Err(ApiError::InvalidField(format!(
                "metadata must be at most {MAX_METADATA_BYTES} bytes"
            )));
        }
        check_metadata_content(metadata)?;
    }
    Ok(Content {
        kind,
        title,
        message,
        link,
        metadata,
    })
}

/// Metadata is kept as sent, so what MySQL's JSON check refuses must be
/// refused here: deep nesting (MariaDB stops at 32 levels) and escapes of
/// lone UTF-16 surrogates, which the raw-value parser lets through.
fn check_metadata_content(metadata: &str) -> Result<(), ApiError> {
    if json_depth(metadata) > MAX_METADATA_DEPTH {
        return Err(ApiError::InvalidField(format!(
            "metadata must not nest deeper than {MAX_METADATA_DEPTH} levels"
        )));
    }
    serde_json::from_str::<serde_json::Value>(metadata)
        .map(drop)
        .map_err(|e| ApiError::InvalidField(format!("metadata is not valid JSON text: {e}")))
}

/// Deepest nesting of objects and arrays in syntactically valid JSON.
fn json_depth(json: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for byte in json.bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_brackets_outside_strings_only() {
        assert_eq!(json_depth("{}"), 1);
        assert_eq!(json_depth(r#"{"a":[1,{"b":[]}],"c":{}}"#), 4);
        assert_eq!(json_depth(r#"{"a":"[[[{{{"}"#), 1);
        assert_eq!(json_depth(r#"{"a":"\"[[[\\","b":[[]]}"#), 3);
    }

    #[test]
    fn metadata_that_mysql_would_refuse_is_refused_here() {
        let nested = |levels: usize| format!("{}{}", "[".repeat(levels), "]".repeat(levels));
        assert!(check_metadata_content(&format!(r#"{{"a":{}}}"#, nested(15))).is_ok());
        assert!(check_metadata_content(&format!(r#"{{"a":{}}}"#, nested(16))).is_err());
        assert!(check_metadata_content(r#"{"a":"\ud83d\ude00"}"#).is_ok());
        for lone in [
            r#"{"a":"\ud800"}"#,
            r#"{"a":"\udc00"}"#,
            r#"{"a":"\ud800\u0041"}"#,
        ] {
            assert!(check_metadata_content(lone).is_err(), "{lone}");
        }
    }
}

/// Any body at all is either accepted as a valid request or refused with an
/// error; parsing and validation never panic.
#[cfg(test)]
mod fuzz {
    use actix_web::ResponseError;
    use proptest::prelude::*;

    use super::*;

    fn field() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("null".to_string()),
            Just("\"\"".to_string()),
            Just("\"alice\"".to_string()),
            Just("[\"alice\"]".to_string()),
            Just("{}".to_string()),
            Just("{\"a\":[1,{\"b\":null}]}".to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            (0usize..40).prop_map(|d| format!(r#"{{"a":{}{}}}"#, "[".repeat(d), "]".repeat(d))),
            r#"\\u[dD][0-9a-fA-F]{3}( |\\u[dD][0-9a-fA-F]{3})?"#
                .prop_map(|escapes| format!(r#"{{"s":"{escapes}"}}"#)),
            ".{0,300}".prop_map(|s| serde_json::Value::from(s).to_string()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = check_webhook_body(&bytes);
            let _ = check_send_body(&bytes);
        }

        #[test]
        fn arbitrary_fields_are_accepted_or_refused_cleanly(
            recipient in field(), message in field(), title in field(), kind in field(),
            link in field(), metadata in field(), api_key in field(),
        ) {
            let webhook = format!(
                r#"{{"recipientId":{recipient},"message":{message},"title":{title},"type":{kind},"link":{link},"metadata":{metadata},"apiKey":{api_key}}}"#
            );
            match check_webhook_body(webhook.as_bytes()) {
                Ok(()) => {}
                Err(error) => prop_assert!(error.status_code().is_client_error(), "{error:?}"),
            }
            let send = format!(
                r#"{{"recipients":[{recipient}],"message":{message},"title":{title},"type":{kind},"link":{link},"metadata":{metadata}}}"#
            );
            match check_send_body(send.as_bytes()) {
                Ok(()) => {
                    // What is accepted, MariaDB's JSON check accepts too: no
                    // lone surrogates, and well under its 32 levels.
                    prop_assert!(serde_json::from_str::<serde_json::Value>(&metadata).is_ok());
                    prop_assert!(json_depth(&metadata) <= MAX_METADATA_DEPTH);
                }
                Err(error) => prop_assert!(error.status_code().is_client_error(), "{error:?}"),
            }
        }
    }
}
