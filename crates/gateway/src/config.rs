//! Configuration of a gateway node, read from the environment.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `GATEWAY_ADDR` | `127.0.0.1:8082` | address the HTTP/WebSocket server binds |
//! | `NODE_ID` | host name and port | name of this node in `welcome` frames and logs |
//! | `REDIS_URL` | `redis://127.0.0.1:6379` | Redis carrying the per-user channels |
//! | `REDIS_CLUSTER_NODES` | none | Comma-separated `host:port` seed nodes of a Redis Cluster; when set, used instead of `REDIS_URL` (events go over sharded pub/sub) |
//! | `DATABASE_URL` | required | MySQL, for unread counts and read marks |
//! | `JWT_SECRET` or `JWT_PUBLIC_KEY_FILE` (+ `JWT_ALGORITHM`) or `JWT_JWKS` (+ `JWT_JWKS_MIN_REFRESH_SECS`, `JWT_JWKS_MAX_AGE_SECS`), `JWT_ISSUER`, `JWT_AUDIENCE` (or `JWT_ACCEPT_ANY_AUDIENCE`), `JWT_LEEWAY_SECS`, `TOKEN_MAX_LIFETIME_SECS` | as for the api | user token validation (exactly one key source) |
//! | `CHANNEL_PREFIX` | empty | prepended to every Redis channel name |
//! | `ALLOWED_ORIGINS` | unset (any) | comma-separated `Origin` values allowed to connect |
//! | `HEARTBEAT_SECS` | `25` | protocol ping interval; silent clients are closed after twice this |
//! | `AUTH_TIMEOUT_SECS` | `5` | time to send the `auth` frame when no token came with the upgrade |
//! | `SEND_QUEUE_FRAMES` | `256` | frames queued for one connection before it counts as stalled |
//! | `SEND_QUEUE_BYTES` | `1048576` | bytes queued for one connection before it counts as stalled |
//! | `SEND_TIMEOUT_SECS` | `10` | longest wait for one frame to be taken by the socket |
//! | `MAX_FRAME_BYTES` | `65536` | largest inbound frame; larger ones close with 1009 |
//! | `FRAME_RATE` / `FRAME_BURST` | `20` / `40` | inbound frames per second (and burst) per connection; the first excess gets an `error` frame, sustained excess closes with 1008 |
//! | `CONNECT_RATE` / `CONNECT_BURST` | `50` / `200` | new connections per second (and burst) per client address; beyond: HTTP 429 |
//! | `TRUSTED_PROXIES` | `127.0.0.1,::1` | peers whose `X-Forwarded-For` gives the client address |
//! | `MAX_CONNECTIONS` | `50000` | connections per node; beyond: HTTP 503 before the upgrade |
//! | `MAX_CONNECTIONS_PER_USER` | `20` | connections per user per node; beyond: HTTP 429 |
//! | `DRAIN_TIMEOUT_SECS` | `30` | longest graceful shutdown |
//! | `DRAIN_BATCH` | `500` | connections closed per step while draining |
//! | `DRAIN_INTERVAL_MS` | `100` | pause between draining steps |
//! | `REDIS_PING_SECS` | `15` | how often the subscriber connection is checked |
//! | `PUBLISH_LAG_SECS` | `15` | how long an event may trail its notification's `created_at` (api batching and publish retries); catch-ups reach back this far |
//! | `STATS_INTERVAL_SECS` | `60` | how often connection counts are logged |
//! | `GATEWAY_WORKERS` | number of CPUs | HTTP worker threads |
//! | `DATABASE_POOL_SIZE` | `4` | MySQL connections per node |
//! | `TOPIC_POLICY` | unset (any user may subscribe to any topic, no client may publish, no presence) | the topic policy file, the same as the api's |
//! | `JWT_ROLES_CLAIM` | `roles` | the claim holding a token's roles |
//! | `MAX_TOPICS_PER_CONNECTION` | `100` | topics one connection may subscribe to |
//! | `NODE_HEARTBEAT_MS` | `10000` | how often the node renews its liveness in Redis; the live sessions and presence of a node that dies disappear within two intervals |
//! | `CONNECTION_LOG` | `true` | write a `connection_logs` row per connection and refused attempt |
//! | `CHAT_NOTIFY_OFFLINE` | `true` | members with no live session get a `chat.message` notification, at most one per conversation per minute |
//! | `CHAT_MESSAGES_PER_SECOND`, `CHAT_MESSAGE_BURST` | `10`, `30` | chat messages per user and process |
//! | `CHAT_SIGNALS_PER_SECOND`, `CHAT_SIGNAL_BURST` | `5`, `20` | typing and read frames per user and process |
//! | `CONNECTION_LOG_QUEUE` | `10000` | rows waiting for MySQL before new ones are dropped (and counted) |
//! | `PRESENCE_GRACE_MS` | `3000` | how long a user's last connection in a presence topic counts after it leaves, so reconnects do not show as leave and join |
//! | `SOCKETIO_NOTIFICATION_EVENT` | `new_notification` | the event Socket.IO clients (`/socket.io/`) get a new notification under: `new_notification`, `notification` or `notification:new` |
//! | `LOG_FORMAT`, `RUST_LOG` | `text`, `info` | logging |

use std::net::{IpAddr, SocketAddr};

use notify_chat::ChatSettings;
use notify_protocol::socketio::NotificationEvent;
use std::time::Duration;

use std::sync::Arc;

use notify_auth::{JwtConfig, TopicPolicy};
use notify_service::settings::{
    jwt_config, optional, parsed, required, topic_policy, trusted_proxies,
};

#[derive(Clone, Debug)]
pub struct Limits {
    pub heartbeat: Duration,
    pub auth_timeout: Duration,
    pub queue_frames: usize,
    pub queue_bytes: usize,
    pub send_timeout: Duration,
    pub max_frame_bytes: usize,
    /// Invalid frames a connection may send before it is closed with 1008.
    pub max_invalid_frames: u32,
    /// Inbound frames per second one connection may send, and the burst.
    pub frame_rate: u32,
    pub frame_burst: u32,
    /// New connections per second from one client address, and the burst.
    pub connect_rate: u32,
    pub connect_burst: u32,
    /// Connections this node holds at most; beyond it answers 503 before
    /// upgrading, so the load balancer or client tries another node.
    pub max_connections: usize,
    /// Connections one user may hold on this node.
    pub max_connections_per_user: usize,
    pub max_topics_per_connection: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(25),
            auth_timeout: Duration::from_secs(5),
            queue_frames: 256,
            queue_bytes: 1 << 20,
            send_timeout: Duration::from_secs(10),
            max_frame_bytes: 64 * 1024,
            max_invalid_frames: 10,
            frame_rate: 20,
            frame_burst: 40,
            connect_rate: 50,
            connect_burst: 200,
            max_connections: 50_000,
            max_connections_per_user: 20,
            max_topics_per_connection: 100,
        }
    }
}

/// Timing of the node's state in Redis (see [`crate::liveness`]).
#[derive(Clone, Debug)]
pub struct Presence {
    /// How often the node renews its liveness; its live sessions and
    /// presence disappear within two intervals of its death.
    pub heartbeat: Duration,
    /// How long a user's last connection in a presence topic counts after
    /// it leaves.
    pub grace: Duration,
}

impl Default for Presence {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(10),
            grace: Duration::from_secs(3),
        }
    }
}

/// The connection log (see [`crate::journal`]).
#[derive(Clone, Debug)]
pub struct ConnectionLog {
    pub enabled: bool,
    /// Rows that may wait for MySQL.
    pub queue: usize,
}

impl Default for ConnectionLog {
    fn default() -> Self {
        Self {
            enabled: true,
            queue: 10_000,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Drain {
    pub timeout: Duration,
    pub batch: usize,
    pub interval: Duration,
}

impl Default for Drain {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            batch: 500,
            interval: Duration::from_millis(100),
        }
    }
}

#[derive(Clone)]
pub struct Config {
    pub addr: SocketAddr,
    /// None: derived from the host name and the bound port.
    pub node_id: Option<String>,
    pub redis_url: String,
    /// Seed nodes of a Redis Cluster (comma-separated); empty for a single
    /// Redis at `redis_url`.
    pub redis_cluster_nodes: String,
    pub database_url: String,
    pub jwt: JwtConfig,
    pub channel_prefix: String,
    pub allowed_origins: Option<Vec<String>>,
    /// Peers whose `X-Forwarded-For` is believed (the load balancers).
    pub trusted_proxies: Vec<IpAddr>,
    pub limits: Limits,
    pub topic_policy: Arc<TopicPolicy>,
    pub presence: Presence,
    pub connection_log: ConnectionLog,
    pub chat: ChatSettings,
    pub drain: Drain,
    pub stats_interval: Duration,
    pub redis_ping_every: Duration,
    /// How long an event may trail its notification's `created_at`.
    pub publish_lag: Duration,
    pub workers: Option<usize>,
    pub database_pool_size: usize,
    /// The event Socket.IO clients get new notifications under (the name
    /// the frontends moving over already listen to).
    pub socketio_event: NotificationEvent,
}

impl Config {
    /// Where Redis is: the cluster when `REDIS_CLUSTER_NODES` names one.
    pub fn redis_target(&self) -> notify_bus::RedisTarget {
        notify_bus::RedisTarget::new(&self.redis_url, &self.redis_cluster_nodes)
    }

    pub fn from_env() -> anyhow::Result<Self> {
        let secs = |name: &str, default: Duration| -> anyhow::Result<Duration> {
            Ok(parsed::<u64>(name)?
                .map(Duration::from_secs)
                .unwrap_or(default))
        };
        let limits_default = Limits::default();
        let drain_default = Drain::default();
        Ok(Self {
            addr: parsed("GATEWAY_ADDR")?
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8082))),
            node_id: optional("NODE_ID"),
            redis_url: optional("REDIS_URL").unwrap_or_else(|| "redis://127.0.0.1:6379".into()),
            redis_cluster_nodes: optional("REDIS_CLUSTER_NODES").unwrap_or_default(),
            database_url: required("DATABASE_URL")?,
            jwt: jwt_config()?,
            channel_prefix: channel_prefix()?,
            allowed_origins: optional("ALLOWED_ORIGINS").map(|list| {
                list.split(',')
                    .map(|o| o.trim().trim_end_matches('/').to_owned())
                    .filter(|o| !o.is_empty())
                    .collect()
            }),
            limits: Limits {
                heartbeat: secs("HEARTBEAT_SECS", limits_default.heartbeat)?,
                auth_timeout: secs("AUTH_TIMEOUT_SECS", limits_default.auth_timeout)?,
                queue_frames: parsed("SEND_QUEUE_FRAMES")?.unwrap_or(limits_default.queue_frames),
                queue_bytes: parsed("SEND_QUEUE_BYTES")?.unwrap_or(limits_default.queue_bytes),
                send_timeout: secs("SEND_TIMEOUT_SECS", limits_default.send_timeout)?,
                max_frame_bytes: parsed("MAX_FRAME_BYTES")?
                    .unwrap_or(limits_default.max_frame_bytes),
                max_invalid_frames: limits_default.max_invalid_frames,
                frame_rate: parsed("FRAME_RATE")?.unwrap_or(limits_default.frame_rate),
                frame_burst: parsed("FRAME_BURST")?.unwrap_or(limits_default.frame_burst),
                connect_rate: parsed("CONNECT_RATE")?.unwrap_or(limits_default.connect_rate),
                connect_burst: parsed("CONNECT_BURST")?.unwrap_or(limits_default.connect_burst),
                max_connections: parsed("MAX_CONNECTIONS")?
                    .unwrap_or(limits_default.max_connections),
                max_connections_per_user: parsed("MAX_CONNECTIONS_PER_USER")?
                    .unwrap_or(limits_default.max_connections_per_user),
                max_topics_per_connection: parsed("MAX_TOPICS_PER_CONNECTION")?
                    .unwrap_or(limits_default.max_topics_per_connection),
            },
            topic_policy: topic_policy()?,
            presence: Presence {
                heartbeat: parsed::<u64>("NODE_HEARTBEAT_MS")?
                    .map(Duration::from_millis)
                    .unwrap_or(Presence::default().heartbeat)
                    .max(Duration::from_millis(100)),
                grace: parsed::<u64>("PRESENCE_GRACE_MS")?
                    .map(Duration::from_millis)
                    .unwrap_or(Presence::default().grace),
            },
            connection_log: ConnectionLog {
                enabled: parsed("CONNECTION_LOG")?.unwrap_or(true),
                queue: parsed("CONNECTION_LOG_QUEUE")?.unwrap_or(ConnectionLog::default().queue),
            },
            trusted_proxies: trusted_proxies()?,
            chat: ChatSettings::from_environment()?,
            drain: Drain {
                timeout: secs("DRAIN_TIMEOUT_SECS", drain_default.timeout)?,
                batch: parsed("DRAIN_BATCH")?.unwrap_or(drain_default.batch).max(1),
                interval: parsed::<u64>("DRAIN_INTERVAL_MS")?
                    .map(Duration::from_millis)
                    .unwrap_or(drain_default.interval),
            },
            stats_interval: secs("STATS_INTERVAL_SECS", Duration::from_secs(60))?,
            redis_ping_every: secs("REDIS_PING_SECS", Duration::from_secs(15))?,
            publish_lag: secs("PUBLISH_LAG_SECS", Duration::from_secs(15))?,
            workers: parsed("GATEWAY_WORKERS")?,
            database_pool_size: parsed("DATABASE_POOL_SIZE")?.unwrap_or(4),
            socketio_event: parsed("SOCKETIO_NOTIFICATION_EVENT")?
                .unwrap_or(NotificationEvent::NewNotification),
        })
    }
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
