//! What every request handler shares.

use notify_auth::{ApiKeys, TopicPolicy, WebhookSecrets};

use std::net::IpAddr;
use std::sync::Arc;

use notify_service::refusals::Counters;

use crate::batcher::Batcher;
use crate::limits::RateLimits;
use notify_bus::{Publisher, RedisPool, TokenGate};
use notify_protocol::{ChannelNames, Event};
use notify_store::DbPool;

pub struct AppState {
    pub db: DbPool,
    /// Where feed reads go (a read replica within its bound, or `db`).
    pub reads: crate::reads::FeedReads,
    pub batcher: Batcher,
    pub redis: RedisPool,
    pub publisher: Publisher,
    pub channels: ChannelNames,
    /// Verifies user tokens and checks them against revocations.
    pub gate: TokenGate,
    pub api_keys: ApiKeys,
    pub webhook_secrets: WebhookSecrets,
    pub limits: RateLimits,
    /// Peers whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<IpAddr>,
    /// Refused requests by error code, for `/metrics` and the stats log.
    pub refusals: Arc<Counters>,
    /// Which topics track presence.
    pub policy: Arc<TopicPolicy>,
    pub presence: notify_bus::PresenceStore,
    /// Users' live sessions on every gateway.
    pub sessions: notify_bus::SessionStore,
    /// Which gateway processes are alive.
    pub nodes: notify_bus::NodeStore,
    /// Conversations and messages.
    pub chat: notify_chat::Chat,
    /// Signs development tokens (`DEV_TOKENS=true`); `None` in production.
    pub dev_tokens: Option<crate::routes::dev::DevTokens>,
}

impl AppState {
    /// Queues `event` for the user's channel; call only after the change it
    /// describes is committed.
    pub fn publish(&self, user: &str, event: &Event) {
        self.publisher.publish_to_user(&self.channels, user, event);
    }
}
