//! Chat: direct and group conversations, messages, typing signals and read
//! receipts, for the api (HTTP) and the gateways (WebSocket frames) alike.
//!
//! MySQL holds conversations, members and messages; a change is published
//! after it is committed, on the channel of each member, so it reaches
//! every device on every gateway through the same path as notifications.
//! Members read at the moment a message is stored are the ones it is
//! delivered to: a user removed from a group receives nothing after the
//! removal committed. A member who was offline catches up with the HTTP
//! history; [`offline`] tells them with a notification.

mod conversations;
pub mod error;
mod limits;
mod messages;
pub mod offline;
pub mod settings;
mod wire;

use notify_bus::{Publisher, RedisPool};
use notify_protocol::ChannelNames;
use notify_store::DbPool;

pub use conversations::{ConversationPage, NewConversation};
pub use error::ChatError;
pub use messages::ReadReceipt;
pub use offline::OfflineNotices;
pub use settings::ChatSettings;

/// The chat service one process runs.
pub struct Chat {
    db: DbPool,
    redis: RedisPool,
    publisher: Publisher,
    channels: ChannelNames,
    limits: limits::ChatLimits,
    /// None when offline members are not notified.
    offline: Option<OfflineNotices>,
}

impl Chat {
    pub fn new(
        db: DbPool,
        redis: RedisPool,
        publisher: Publisher,
        channels: ChannelNames,
        settings: &ChatSettings,
        offline: Option<OfflineNotices>,
    ) -> Self {
        Self {
            db,
            redis,
            publisher,
            channels,
            limits: limits::ChatLimits::new(settings),
            offline,
        }
    }

    /// Queues `frame` for every connection of each of `users`. Call only
    /// after the change it describes is committed.
    fn publish<'a>(&self, users: impl IntoIterator<Item = &'a str>, frame: &str) {
        let events: Vec<(String, String)> = users
            .into_iter()
            .map(|user| (self.channels.user(user), frame.to_owned()))
            .collect();
        if !events.is_empty() && !self.publisher.publish_all(events) {
            // Stored all the same: members see it in the history.
            tracing::warn!("chat frame not published: publish queue full");
        }
    }

    async fn conn(&self) -> Result<notify_store::DbConn, ChatError> {
        Ok(notify_store::pool::get(&self.db).await?)
    }
}
