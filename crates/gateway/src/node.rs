//! What every connection of one node shares, and the token gate every
//! connection passes: at the upgrade, in an `auth` frame and in `refresh`.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use chrono::TimeDelta;
use governor::DefaultKeyedRateLimiter;
use notify_auth::TopicPolicy;
use notify_bus::{Publisher, RedisPool, TokenGate};
use notify_protocol::ChannelNames;
use notify_service::refusals::Counters;
use notify_store::DbPool;
use tokio::sync::Semaphore;

use crate::acks::Acks;
use crate::config::Limits;
use crate::journal::Journal;
use crate::liveness::Liveness;
use crate::presence::Presence;
use crate::registry::Registry;
use crate::subscriber::SubscriberStatus;
use crate::topics::Topics;

/// Everything the connections of one node share.
pub struct Node {
    pub id: String,
    /// This process, unique per start: the key of its liveness, sessions
    /// and presence in Redis, and of its connection log rows.
    pub instance: String,
    /// Connection log rows, live sessions and connect/disconnect logs.
    pub journal: Journal,
    /// The task keeping sessions and presence in Redis, for its counters.
    pub liveness: Arc<Liveness>,
    pub registry: Arc<Registry>,
    /// Who subscribes to which topic here.
    pub topics: Arc<Topics>,
    /// Who may subscribe and publish where, and which topics track
    /// presence.
    pub policy: Arc<TopicPolicy>,
    /// This node's share of presence; None when no topic tracks it.
    pub presence: Option<Arc<Presence>>,
    /// Pooled connections for reads such as topic snapshots.
    pub redis: RedisPool,
    /// Verifies tokens and checks them against revocations.
    pub gate: TokenGate,
    pub db: DbPool,
    pub publisher: Publisher,
    /// Conversations and messages: `message.send`, `typing` and
    /// `message.read` frames.
    pub chat: notify_chat::Chat,
    pub channels: ChannelNames,
    pub limits: Limits,
    /// The event name Socket.IO clients get new notifications under.
    pub socketio_event: notify_protocol::socketio::NotificationEvent,
    pub allowed_origins: Option<Vec<String>>,
    pub subscriber: Arc<SubscriberStatus>,
    /// Set on shutdown: new upgrades are refused and `/ready` fails.
    pub draining: AtomicBool,
    pub acks: Acks,
    /// Bounds concurrent MySQL backfills, so 10,000 connections resyncing
    /// after a Redis restart queue up instead of stampeding MySQL.
    pub backfills: Semaphore,
    /// How long an event may trail its row's `created_at`; catch-ups reach
    /// back this far.
    pub publish_lag: TimeDelta,
    /// Sockets open on this node, authenticated or not.
    pub open: AtomicUsize,
    /// New connections per client address.
    pub connects: DefaultKeyedRateLimiter<IpAddr>,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpAddr>,
    /// Refused upgrades and frames by error code, for `/metrics` and the
    /// stats log.
    pub refusals: Arc<Counters>,
    /// Connections the node closed, by close reason.
    pub closes: Counters,
}

/// Counts a socket as open on the node for as long as it lives.
pub struct OpenSocket(pub(crate) Arc<Node>);

impl OpenSocket {
    pub fn new(node: Arc<Node>) -> Self {
        node.open.fetch_add(1, Ordering::Relaxed);
        Self(node)
    }
}

impl Drop for OpenSocket {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Node {
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}
