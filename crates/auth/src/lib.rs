//! Authentication shared by the api and the gateway: user tokens (JWT) and
//! server-to-server API keys.

pub mod api_key;
pub mod jwt;

pub use api_key::{ApiKeyId, ApiKeys};
pub use jwt::{AuthError, Claims, JwtConfig, JwtVerifier};
