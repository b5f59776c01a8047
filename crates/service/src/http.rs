//! HTTP behaviour shared by both services.

use std::time::Duration;

use actix_web::http::header::{self, HeaderMap};
use actix_web::middleware::DefaultHeaders;
use actix_web::{HttpResponse, HttpResponseBuilder};
use serde_json::json;

/// A client must send its whole request head within this time, or the
/// connection is closed: a client trickling headers a byte at a time
/// (slowloris) holds a socket for this long at most.
pub const REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// Headers every response carries: the services serve JSON only, so
/// browsers are told not to sniff, frame, cache or refer.
pub fn security_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add(("X-Content-Type-Options", "nosniff"))
        .add(("X-Frame-Options", "DENY"))
        .add(("Referrer-Policy", "no-referrer"))
        .add((
            "Content-Security-Policy",
            "default-src 'none'; frame-ancestors 'none'",
        ))
        .add(("Cache-Control", "no-store"))
}

/// A refusal as both services answer it: `{"error":{"code","message"}}`,
/// marked so that the refusal is counted under its code.
pub fn refusal(
    mut response: HttpResponseBuilder,
    code: &'static str,
    message: &str,
) -> HttpResponse {
    let response = response.json(json!({"error": {"code": code, "message": message}}));
    crate::refusals::mark(response, code)
}

/// The credential in `Authorization: Bearer <credential>`, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credential) = value.split_once(' ')?;
    let credential = credential.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !credential.is_empty()).then_some(credential)
}

/// `GET /health`: the process is up and serving HTTP.
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}
