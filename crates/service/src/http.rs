//! HTTP behaviour shared by both services.

use std::time::Duration;

use actix_web::middleware::DefaultHeaders;

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
