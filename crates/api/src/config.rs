//! Configuration of the api, read from the environment.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `DATABASE_URL` | required | `mysql://user:pass@host:3306/db` |
//! | `DATABASE_READ_URL` | none | A read replica of `DATABASE_URL` for feed reads (`GET /api/notifications`, unread counts); see `DATABASE_READ_MAX_LAG_MS` |
//! | `DATABASE_READ_MAX_LAG_MS` | `2000` | How far behind the primary the replica may be for feed reads to use it; the primary serves them otherwise, and serves a user's reads for this long after they changed their feed |
//! | `REDIS_URL` | `redis://127.0.0.1:6379` | Redis used to publish events |
//! | `REDIS_CLUSTER_NODES` | none | Comma-separated `host:port` seed nodes of a Redis Cluster; when set, used instead of `REDIS_URL` (events go over sharded pub/sub) |
//! | `JWT_SECRET` | required unless one below is set | HS256 secret that signs user tokens |
//! | `JWT_PUBLIC_KEY_FILE` / `JWT_ALGORITHM` | unset / `RS256` | verify tokens with this PEM public key (RS256, ES256, ...) instead |
//! | `JWT_JWKS` | unset | verify tokens with the keys of this JWKS file or `http(s)://` URL instead |
//! | `JWT_JWKS_MIN_REFRESH_SECS` / `JWT_JWKS_MAX_AGE_SECS` | `30` / `3600` | refetch the JWKS on an unknown `kid` at most this often / when older than this |
//! | `JWT_ISSUER` | unset | when set, tokens must carry this `iss` |
//! | `JWT_AUDIENCE` | unset; required with `JWT_PUBLIC_KEY_FILE` or `JWT_JWKS` unless `JWT_ACCEPT_ANY_AUDIENCE=true` | when set, tokens must carry this `aud` |
//! | `JWT_LEEWAY_SECS` | `0` (at most 300) | clock leeway for `exp`, `nbf` and the maximum lifetime, the same everywhere |
//! | `WEBHOOK_API_KEYS` | required unless signing secrets are set | comma-separated keys for server-to-server calls, at least 24 characters each |
//! | `WEBHOOK_SIGNING_SECRETS` | unset | `name=whsec_<base64>` entries (comma or space separated; a name may repeat while rotating) for Standard Webhooks signatures |
//! | `JWT_ROLES_CLAIM` | `roles` | the claim holding a token's roles (an array of strings) |
//! | `TOPIC_POLICY` | unset (any user may subscribe to any topic, no client may publish, no presence) | the topic policy file (TOML, or JSON by its `.json` extension); here it decides which topics' presence can be listed |
//! | `CONNECTION_LOG_RETENTION_DAYS` | `30` | `connection_logs` rows older than this are deleted (in batches, every minute) |
//! | `NODE_SWEEP_SECS` | `5` | how often the api closes the connection log rows (`node_lost`) and removes the live sessions of gateways that died |
//! | `TOKEN_MAX_LIFETIME_SECS` | `86400` | longest validity of a user token: tokens whose `exp` is further away are refused; a user disconnect refuses that user's earlier tokens for this long |
//! | `CORS_ALLOWED_ORIGINS` | unset | comma-separated origins whose browsers may call the feed endpoints; none when unset |
//! | `DEV_TOKENS` | `false` | development only: `POST /api/dev/token` signs a token for any user who asks (needs `JWT_SECRET`); for demos and local clusters, never in production |
//! | `API_ADDR` | `127.0.0.1:8081` | address the HTTP server binds |
//! | `API_WORKERS` | number of CPUs | HTTP worker threads |
//! | `DATABASE_POOL_SIZE` | `16` | MySQL connections per process |
//! | `WRITE_CONCURRENCY` | `1` | transactions storing new notifications at once; requests arriving meanwhile are batched into the next one |
//! | `SWEEP_INTERVAL_SECS` | `5` | how often each node republishes notifications whose event was never published |
//! | `SWEEP_MIN_AGE_SECS` | `10` | unpublished batches younger than this are left to the normal path |
//! | `CHANNEL_PREFIX` | empty | prepended to every Redis channel name |
//! | `API_KEY_RATE` / `API_KEY_BURST` | `20000` / `20000` | requests per second (and burst) one API key may send; beyond: 429 |
//! | `USER_RATE` / `USER_BURST` | `20` / `60` | feed requests per second (and burst) per user; beyond: 429 |
//! | `CREDENTIAL_FAILURES_PER_MINUTE` / `CREDENTIAL_FAILURE_BURST` | `10` / `20` | wrong API keys or signatures per minute (and burst) one client address may send; beyond: 429 for every request with credentials from it |
//! | `TRUSTED_PROXIES` | `127.0.0.1,::1` | peers whose `X-Forwarded-For` gives the client address |
//! | `LOG_FORMAT` | `text` | `text` or `json` |
//! | `RUST_LOG` | `info` | log filter |

use notify_chat::ChatSettings;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::bail;
use notify_auth::{ApiKeys, JwtConfig, WebhookSecrets};

use crate::limits::{FailureRate, Rate};
use std::sync::Arc;

use notify_auth::TopicPolicy;
use notify_service::settings::{
    jwt_config, optional, parsed, required, topic_policy, trusted_proxies,
};

/// Shortest API key accepted: a key is a password that any client may
/// guess at, so it must be long and random.
pub const MIN_API_KEY_CHARS: usize = 24;

#[derive(Clone)]
pub struct Config {
    pub database_url: String,
    /// A read replica for feed reads, if any.
    pub database_read_url: Option<String>,
    /// The most a replica may lag for feed reads to go to it.
    pub database_read_max_lag: Duration,
    pub redis_url: String,
    /// Seed nodes of a Redis Cluster (comma-separated); empty for a single
    /// Redis at `redis_url`.
    pub redis_cluster_nodes: String,
    pub jwt: JwtConfig,
    pub api_keys: ApiKeys,
    pub webhook_secrets: WebhookSecrets,
    /// Origins allowed to call from a browser (CORS); empty: none.
    pub cors_origins: Vec<String>,
    pub addr: SocketAddr,
    pub workers: Option<usize>,
    pub database_pool_size: usize,
    pub write_concurrency: usize,
    pub sweep_every: Duration,
    pub sweep_min_age: Duration,
    pub channel_prefix: String,
    pub per_key: Rate,
    pub per_user: Rate,
    /// Wrong credentials one client address may send.
    pub credential_failures: FailureRate,
    /// Peers whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<IpAddr>,
    /// Which topics track presence (for listing it).
    pub topic_policy: Arc<TopicPolicy>,
    /// Connection log rows older than this are deleted.
    pub connection_log_retention: Duration,
    /// How often the rows and sessions of gateways that died are closed.
    pub node_sweep_every: Duration,
    pub chat: ChatSettings,
    /// `POST /api/dev/token` hands out tokens for any user: a convenience of
    /// demos and local clusters that must never be on by accident.
    pub dev_tokens: bool,
}

impl Config {
    /// Where Redis is: the cluster when `REDIS_CLUSTER_NODES` names one.
    pub fn redis_target(&self) -> notify_bus::RedisTarget {
        notify_bus::RedisTarget::new(&self.redis_url, &self.redis_cluster_nodes)
    }

    /// A small api for tests and local tools: an ephemeral port, one worker,
    /// a fast sweep, rate limits out of the way and the credential-failure
    /// limit at its default. Callers adjust what they exercise.
    pub fn for_tests(
        database_url: String,
        redis_url: String,
        jwt: JwtConfig,
        api_keys: ApiKeys,
        channel_prefix: String,
    ) -> Config {
        Config {
            database_url,
            database_read_url: None,
            database_read_max_lag: Duration::from_secs(2),
            redis_url,
            redis_cluster_nodes: String::new(),
            jwt,
            api_keys,
            webhook_secrets: WebhookSecrets::default(),
            cors_origins: Vec::new(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            workers: Some(1),
            database_pool_size: 4,
            write_concurrency: 2,
            sweep_every: Duration::from_millis(200),
            sweep_min_age: Duration::from_secs(1),
            channel_prefix,
            per_key: Rate {
                per_second: 100_000,
                burst: 100_000,
            },
            per_user: Rate {
                per_second: 1000,
                burst: 1000,
            },
            credential_failures: FailureRate {
                per_minute: 10,
                burst: 20,
            },
            trusted_proxies: notify_service::client::default_trusted_proxies(),
            topic_policy: Arc::default(),
            connection_log_retention: Duration::from_secs(30 * 86_400),
            node_sweep_every: Duration::from_millis(200),
            chat: ChatSettings::default(),
            dev_tokens: false,
        }
    }

    pub fn from_env() -> anyhow::Result<Self> {
        let api_keys = api_keys(&optional("WEBHOOK_API_KEYS").unwrap_or_default())?;
        let webhook_secrets =
            WebhookSecrets::parse(&optional("WEBHOOK_SIGNING_SECRETS").unwrap_or_default())
                .map_err(|e| anyhow::anyhow!("invalid WEBHOOK_SIGNING_SECRETS: {e}"))?;
        if api_keys.is_empty() && webhook_secrets.is_empty() {
            bail!("missing required setting WEBHOOK_API_KEYS (or WEBHOOK_SIGNING_SECRETS)");
        }
        Ok(Self {
            database_url: required("DATABASE_URL")?,
            database_read_url: optional("DATABASE_READ_URL"),
            database_read_max_lag: parsed::<u64>("DATABASE_READ_MAX_LAG_MS")?
                .map(Duration::from_millis)
                .unwrap_or(Duration::from_secs(2)),
            redis_url: optional("REDIS_URL").unwrap_or_else(|| "redis://127.0.0.1:6379".into()),
            redis_cluster_nodes: optional("REDIS_CLUSTER_NODES").unwrap_or_default(),
            jwt: jwt_config()?,
            api_keys,
            webhook_secrets,
            cors_origins: cors_origins(&optional("CORS_ALLOWED_ORIGINS").unwrap_or_default())?,
            addr: parsed("API_ADDR")?.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8081))),
            workers: parsed("API_WORKERS")?,
            database_pool_size: parsed("DATABASE_POOL_SIZE")?.unwrap_or(16),
            write_concurrency: parsed("WRITE_CONCURRENCY")?.unwrap_or(1),
            sweep_every: Duration::from_secs(parsed("SWEEP_INTERVAL_SECS")?.unwrap_or(5)),
            sweep_min_age: Duration::from_secs(parsed("SWEEP_MIN_AGE_SECS")?.unwrap_or(10)),
            channel_prefix: channel_prefix()?,
            per_key: Rate {
                per_second: parsed("API_KEY_RATE")?.unwrap_or(20_000),
                burst: parsed("API_KEY_BURST")?.unwrap_or(20_000),
            },
            per_user: Rate {
                per_second: parsed("USER_RATE")?.unwrap_or(20),
                burst: parsed("USER_BURST")?.unwrap_or(60),
            },
            credential_failures: FailureRate {
                per_minute: parsed("CREDENTIAL_FAILURES_PER_MINUTE")?.unwrap_or(10),
                burst: parsed("CREDENTIAL_FAILURE_BURST")?.unwrap_or(20),
            },
            trusted_proxies: trusted_proxies()?,
            topic_policy: topic_policy()?,
            connection_log_retention: Duration::from_secs(
                parsed::<u64>("CONNECTION_LOG_RETENTION_DAYS")?
                    .unwrap_or(30)
                    .clamp(1, 36_500)
                    * 86_400,
            ),
            node_sweep_every: Duration::from_secs(
                parsed::<u64>("NODE_SWEEP_SECS")?.unwrap_or(5).max(1),
            ),
            chat: ChatSettings::from_environment()?,
            dev_tokens: parsed("DEV_TOKENS")?.unwrap_or(false),
        })
    }
}

/// The configured API keys; a short one stops the service, named by its
/// position only (the key itself is never printed).
fn api_keys(list: &str) -> anyhow::Result<ApiKeys> {
    let keys = list.split(',').map(str::trim).filter(|k| !k.is_empty());
    for (i, key) in keys.enumerate() {
        let chars = key.chars().count();
        if chars < MIN_API_KEY_CHARS {
            bail!(
                "WEBHOOK_API_KEYS entry {} has {chars} characters; API keys must have at least {MIN_API_KEY_CHARS} (e.g. openssl rand -hex 24)",
                i + 1
            );
        }
    }
    Ok(ApiKeys::parse(list))
}

/// Origins like `https://app.example.com`; a wildcard or a URL with a path
/// is refused, since either would allow more than was meant.
fn cors_origins(list: &str) -> anyhow::Result<Vec<String>> {
    list.split(',')
        .map(|o| o.trim().trim_end_matches('/'))
        .filter(|o| !o.is_empty())
        .map(|origin| {
            let uri: actix_web::http::Uri = origin
                .parse()
                .map_err(|_| anyhow::anyhow!("invalid CORS_ALLOWED_ORIGINS entry {origin}"))?;
            let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
            if !scheme_ok || uri.host().is_none() || !matches!(uri.path(), "" | "/") {
                bail!("CORS_ALLOWED_ORIGINS entries are origins like https://app.example.com, not {origin}");
            }
            Ok(origin.to_owned())
        })
        .collect()
}

/// `CHANNEL_PREFIX`, which must not contain a hash tag's braces: they would
/// move every name into one Redis Cluster slot, or split a topic from its
/// snapshot.
fn channel_prefix() -> anyhow::Result<String> {
    let prefix = optional("CHANNEL_PREFIX").unwrap_or_default();
    if !notify_protocol::ChannelNames::valid_prefix(&prefix) {
        anyhow::bail!("CHANNEL_PREFIX must not contain '{{' or '}}'");
    }
    Ok(prefix)
}
