//! HTTP behaviour shared by both services.

use actix_web::middleware::DefaultHeaders;

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
