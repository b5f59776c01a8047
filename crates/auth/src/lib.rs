//! Authentication shared by the api and the gateway: user tokens (JWT),
//! server-to-server API keys and signed webhooks.

pub mod api_key;
pub mod jwks;
pub mod jwt;
pub mod policy;
pub mod webhook;

pub use api_key::{ApiKeyId, ApiKeys};
pub use jsonwebtoken::Algorithm;
pub use jwt::{AuthError, Claims, JwtConfig, JwtKey, JwtVerifier};
pub use policy::TopicPolicy;
pub use webhook::{SignatureError, SignedHeaders, WebhookSecrets};

/// The largest difference between two nodes' clocks that what is remembered
/// to refuse a credential (a revocation, a used `webhook-id`) allows for: it
/// is kept this much longer than the credential could be accepted by the
/// node that checks it.
pub const CLOCK_SKEW_MARGIN_SECS: u64 = 60;

/// Seconds since the Unix epoch, the unit of `exp`, `iat` and webhook
/// timestamps.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
