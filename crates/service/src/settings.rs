//! Reading settings from the environment, shared by the api and the gateway
//! so both name, default and refuse settings the same way.

use anyhow::{bail, Context};

use notify_auth::JwtConfig;

/// A setting that must be present and non-blank.
pub fn required(name: &str) -> anyhow::Result<String> {
    optional(name).with_context(|| format!("missing required setting {name}"))
}

/// A setting that may be absent; blank counts as absent.
pub fn optional(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// An optional setting parsed with `FromStr`; a bad value names the setting.
pub fn parsed<T>(name: &str) -> anyhow::Result<Option<T>>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    optional(name)
        .map(|v| {
            v.trim()
                .parse()
                .map_err(|e| anyhow::anyhow!("invalid value for {name}: {e}"))
        })
        .transpose()
}

/// `JWT_SECRET` (required, at least 16 bytes), `JWT_ISSUER` and
/// `JWT_AUDIENCE` (optional).
pub fn jwt_config() -> anyhow::Result<JwtConfig> {
    let secret = required("JWT_SECRET")?;
    if secret.len() < 16 {
        bail!("JWT_SECRET must be at least 16 bytes");
    }
    Ok(JwtConfig {
        secret: secret.into_bytes(),
        issuer: optional("JWT_ISSUER"),
        audience: optional("JWT_AUDIENCE"),
    })
}
