//! Reading settings from the environment, shared by the api and the gateway
//! so both name, default and refuse settings the same way.

use anyhow::{bail, Context};
use notify_auth::jwt::LONGEST_LIFETIME_SECS;

use std::time::Duration;

use notify_auth::jwt::ASYMMETRIC;
use notify_auth::Algorithm;
use notify_auth::{JwtConfig, JwtKey, JwtVerifier};

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

/// Largest `JWT_LEEWAY_SECS`: clocks further apart need fixing, not leeway.
const MAX_JWT_LEEWAY_SECS: u64 = 300;

/// How user tokens are verified; exactly one key source must be set:
///
/// - `JWT_SECRET`: HS256 with this shared secret (at least 16 bytes);
/// - `JWT_PUBLIC_KEY_FILE`: a PEM public key, with `JWT_ALGORITHM` (`RS256`
///   by default, or `ES256`, `RS384`, `RS512`, `PS256`, `ES384`, ...);
/// - `JWT_JWKS`: a JWKS file path or `http(s)://` URL; refetched on an
///   unknown `kid` at most every `JWT_JWKS_MIN_REFRESH_SECS` (30) and when
///   older than `JWT_JWKS_MAX_AGE_SECS` (3600).
///
/// `JWT_ISSUER` and `JWT_AUDIENCE`, when set, must match `iss` and `aud`;
/// with a public key or a JWKS, `JWT_AUDIENCE` is required unless
/// `JWT_ACCEPT_ANY_AUDIENCE=true`. Tokens valid for longer than
/// `TOKEN_MAX_LIFETIME_SECS` (86400) from now are refused, so that
/// revocations, kept that long, outlive them. `JWT_LEEWAY_SECS` (0) is the
/// clock difference with the token issuer allowed on `exp` and `nbf`.
pub fn jwt_config() -> anyhow::Result<JwtConfig> {
    let secret = optional("JWT_SECRET");
    let pem_file = optional("JWT_PUBLIC_KEY_FILE");
    let jwks = optional("JWT_JWKS");
    let key = match (secret, pem_file, jwks) {
        (Some(secret), None, None) => {
            if secret.len() < 16 {
                bail!("JWT_SECRET must be at least 16 bytes");
            }
            JwtKey::Secret(secret.into_bytes())
        }
        (None, Some(file), None) => {
            let algorithm = match optional("JWT_ALGORITHM") {
                None => Algorithm::RS256,
                Some(name) => name
                    .trim()
                    .parse::<Algorithm>()
                    .ok()
                    .filter(|a| ASYMMETRIC.contains(a))
                    .with_context(|| {
                        format!("JWT_ALGORITHM {name} is not a public-key algorithm such as RS256 or ES256")
                    })?,
            };
            let pem = std::fs::read(&file)
                .with_context(|| format!("could not read JWT_PUBLIC_KEY_FILE {file}"))?;
            JwtKey::PublicKey { algorithm, pem }
        }
        (None, None, Some(location)) => JwtKey::Jwks {
            location,
            min_refresh: Duration::from_secs(parsed("JWT_JWKS_MIN_REFRESH_SECS")?.unwrap_or(30)),
            max_age: Duration::from_secs(parsed("JWT_JWKS_MAX_AGE_SECS")?.unwrap_or(3600)),
        },
        (None, None, None) => {
            bail!("missing required setting JWT_SECRET (or JWT_PUBLIC_KEY_FILE or JWT_JWKS)")
        }
        _ => bail!("set only one of JWT_SECRET, JWT_PUBLIC_KEY_FILE and JWT_JWKS"),
    };
    let max_lifetime = parsed("TOKEN_MAX_LIFETIME_SECS")?.unwrap_or(86_400);
    if !(60..=LONGEST_LIFETIME_SECS).contains(&max_lifetime) {
        bail!("TOKEN_MAX_LIFETIME_SECS must be 60 to {LONGEST_LIFETIME_SECS} seconds");
    }
    let leeway = parsed("JWT_LEEWAY_SECS")?.unwrap_or(0);
    if leeway > MAX_JWT_LEEWAY_SECS {
        bail!("JWT_LEEWAY_SECS must be 0 to {MAX_JWT_LEEWAY_SECS} seconds");
    }
    let config = JwtConfig {
        key,
        issuer: optional("JWT_ISSUER"),
        audience: optional("JWT_AUDIENCE"),
        accept_any_audience: parsed("JWT_ACCEPT_ANY_AUDIENCE")?.unwrap_or(false),
        max_lifetime: Duration::from_secs(max_lifetime),
        leeway: Duration::from_secs(leeway),
        roles_claim: optional("JWT_ROLES_CLAIM")
            .unwrap_or_else(|| notify_auth::jwt::DEFAULT_ROLES_CLAIM.to_string()),
    };
    // Refuse a bad key at start, not at the first connection.
    JwtVerifier::new(&config).map_err(anyhow::Error::msg)?;
    Ok(config)
}

/// `TOPIC_POLICY`: the topic policy file (TOML, or JSON by its `.json`
/// extension); without it, the default policy. A file that cannot be read
/// or is invalid stops the service at start.
pub fn topic_policy() -> anyhow::Result<std::sync::Arc<notify_auth::TopicPolicy>> {
    let policy = match optional("TOPIC_POLICY") {
        Some(path) => notify_auth::TopicPolicy::from_file(&path).map_err(anyhow::Error::msg)?,
        None => notify_auth::TopicPolicy::default(),
    };
    Ok(std::sync::Arc::new(policy))
}

/// `TRUSTED_PROXIES`: the peers whose `X-Forwarded-For` is believed
/// (default: loopback, nginx on the same host).
pub fn trusted_proxies() -> anyhow::Result<Vec<std::net::IpAddr>> {
    let Some(list) = optional("TRUSTED_PROXIES") else {
        return Ok(crate::client::default_trusted_proxies());
    };
    list.split(',')
        .map(|ip| {
            ip.trim()
                .parse()
                .map_err(|e| anyhow::anyhow!("invalid value for TRUSTED_PROXIES: {e}"))
        })
        .collect()
}
