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
mod rounds;
pub mod settings;
mod wire;
mod writer;

use notify_bus::{Publisher, RedisPool};
use notify_protocol::ChannelNames;
use notify_store::DbPool;
use tokio::task::JoinHandle;

use writer::Writer;

pub use conversations::{ConversationPage, NewConversation};
pub use error::ChatError;
pub use messages::ReadReceipt;
pub use offline::OfflineNotices;
pub use settings::ChatSettings;

/// The chat service one process runs.
pub struct Chat {
    db: DbPool,
    redis: RedisPool,
    channels: ChannelNames,
    fanout: Fanout,
    limits: limits::ChatLimits,
    /// Stores new messages, in batches under load, and delivers them.
    writer: Writer,
}

/// Publishes a chat frame on the user channel of each member.
#[derive(Clone)]
pub(crate) struct Fanout {
    publisher: Publisher,
    channels: ChannelNames,
}

impl Fanout {
    /// Queues `frame` for every connection of each of `users`. Call only
    /// after the change it describes is committed.
    pub(crate) fn publish<'a>(&self, users: impl IntoIterator<Item = &'a str>, frame: &str) {
        let events: Vec<(String, String)> = users
            .into_iter()
            .map(|user| (self.channels.user(user), frame.to_owned()))
            .collect();
        if !events.is_empty() && !self.publisher.publish_all(events) {
            // Stored all the same: members see it in the history.
            tracing::warn!("chat frame not published: publish queue full");
        }
    }
}

/// The tasks a [`Chat`] runs: close them at shutdown, once no request can
/// send any more, and before the publisher, so that what they queue is
/// published.
pub struct ChatTasks {
    writer: (Writer, JoinHandle<()>),
    offline: Option<(OfflineNotices, JoinHandle<()>)>,
}

impl ChatTasks {
    /// Writes what is queued, sends the notices it leads to, and returns
    /// once both tasks ended.
    pub async fn close(self) {
        let (writer, task) = self.writer;
        writer.close();
        let _ = task.await;
        if let Some((notices, task)) = self.offline {
            notices.close();
            let _ = task.await;
        }
    }
}

impl Chat {
    /// The chat service and its tasks (the message writer and, with
    /// `settings.notify_offline`, the offline notices).
    pub fn start(
        db: DbPool,
        redis: RedisPool,
        publisher: Publisher,
        channels: ChannelNames,
        settings: &ChatSettings,
    ) -> (Self, ChatTasks) {
        let offline = settings.notify_offline.then(|| {
            OfflineNotices::start(
                db.clone(),
                redis.clone(),
                publisher.clone(),
                channels.clone(),
            )
        });
        let fanout = Fanout {
            publisher,
            channels: channels.clone(),
        };
        // The writer delivers what it committed and queues the offline
        // notices itself, so a sender that goes away meanwhile loses
        // nothing, and once the writer ended every notice is queued.
        let writer = Writer::start(
            db.clone(),
            fanout.clone(),
            offline.as_ref().map(|(notices, _)| notices.clone()),
        );
        let chat = Self {
            db,
            redis,
            channels,
            fanout,
            limits: limits::ChatLimits::new(settings),
            writer: writer.0.clone(),
        };
        (chat, ChatTasks { writer, offline })
    }

    fn publish<'a>(&self, users: impl IntoIterator<Item = &'a str>, frame: &str) {
        self.fanout.publish(users, frame);
    }

    async fn conn(&self) -> Result<notify_store::DbConn, ChatError> {
        Ok(notify_store::pool::get(&self.db).await?)
    }
}
