//! What a sending request's body must be: its shape (`SendRequest`,
//! `WebhookRequest`) and every limit on its content, apart from the
//! handlers so the fuzz targets check bodies exactly as the routes do.

use std::borrow::Cow;

use notify_auth::jwt::valid_user_id;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::body;
use crate::error::ApiError;

pub mod events;

/// A `users` list of a request: 1 to [`MAX_RECIPIENTS`] valid user ids,
/// returned sorted without duplicates.
pub fn user_list(users: &[String]) -> Result<Vec<&str>, ApiError> {
    if users.is_empty() {
        return Err(ApiError::InvalidField("users must not be empty".into()));
    }
    if users.len() > MAX_RECIPIENTS {
        return Err(ApiError::TooManyRecipients(MAX_RECIPIENTS));
    }
    if let Some(bad) = users.iter().position(|u| !valid_user_id(u)) {
        return Err(ApiError::InvalidField(format!(
            "users[{bad}] is not a valid user id"
        )));
    }
    let mut unique: Vec<&str> = users.iter().map(String::as_str).collect();
    unique.sort_unstable();
    unique.dedup();
    Ok(unique)
}

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
pub struct SendRequest {
    pub recipients: Vec<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    title: String,
    message: String,
    link: Option<String>,
    metadata: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookRequest {
    pub recipient_id: String,
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
pub fn body_api_key(body: &[u8]) -> Option<Cow<'_, str>> {
    serde_json::from_slice::<BodyKey>(body).ok()?.api_key
}

/// A request that passed every check.
pub struct Content<'a> {
    pub kind: &'a str,
    pub title: &'a str,
    pub message: &'a str,
    pub link: Option<&'a str>,
    pub metadata: Option<&'a str>,
}

impl SendRequest {
    pub fn check(&self) -> Result<Content<'_>, ApiError> {
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
    pub fn check(&self) -> Result<Content<'_>, ApiError> {
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
pub(crate) fn json_depth(json: &str) -> usize {
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
