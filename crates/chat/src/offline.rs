//! Members who are not connected hear of new messages as a `chat.message`
//! notification, through the notification pipeline: stored in MySQL with
//! its outbox row in one transaction, then published (the api's sweep
//! republishes what a crash left behind). At most one per member and
//! conversation per [`THROTTLE`], on every node.
//!
//! Senders never wait for this: messages are queued to one task, which
//! gathers them for up to 100 ms and handles each round with two Redis
//! pipelines (who has no live session, whose throttle is free) and one
//! transaction.

use std::sync::Arc;
use std::time::Duration;

use notify_bus::{Publisher, RedisPool, SessionStore};
use notify_protocol::{ChannelNames, Event, WireMessage};
use notify_store::{DbPool, NewNotification, Notification, StoreError, UnpublishedBatch};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::rounds::Rounds;

/// The notification type of an offline notice.
pub const NOTICE_KIND: &str = "chat.message";
/// The `source` of offline notices in the notifications table.
pub const NOTICE_SOURCE: &str = "chat";
/// At most one notice per member and conversation this often.
pub const THROTTLE: Duration = Duration::from_secs(60);
/// Messages waiting for the task; when full, notices are dropped (the
/// messages themselves are stored and in every member's history).
const QUEUE: usize = 4096;
/// Messages handled per round.
const ROUND: usize = 256;
/// How long a round gathers messages after the first: a notice is not
/// urgent (its member is offline), and a round costs two Redis round
/// trips however many messages it holds.
const GATHER: Duration = Duration::from_millis(100);
/// Rows per INSERT and outbox batch.
const ROWS_PER_BATCH: usize = 500;
const REDIS_TIMEOUT: Duration = Duration::from_secs(5);

struct Job {
    conversation_id: u64,
    message_id: u64,
    sender: String,
    /// Members other than the sender.
    recipients: Vec<String>,
}

/// The queue of the offline-notice task.
#[derive(Clone)]
pub struct OfflineNotices {
    tx: mpsc::Sender<Job>,
    stop: Arc<watch::Sender<bool>>,
}

struct Worker {
    db: DbPool,
    redis: RedisPool,
    publisher: Publisher,
    channels: ChannelNames,
    sessions: SessionStore,
}

impl OfflineNotices {
    /// Starts the task; it ends once [`OfflineNotices::close`] is called,
    /// after handling what was queued.
    pub fn start(
        db: DbPool,
        redis: RedisPool,
        publisher: Publisher,
        channels: ChannelNames,
    ) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (stop, stopped) = watch::channel(false);
        let worker = Worker {
            db,
            redis,
            publisher,
            sessions: SessionStore::new(channels.clone()),
            channels,
        };
        let task = tokio::spawn(worker.run(rx, stopped));
        (
            Self {
                tx,
                stop: Arc::new(stop),
            },
            task,
        )
    }

    /// Queues notices of `message` for its members other than the sender
    /// who turn out to be offline. Never waits.
    pub(crate) fn queue(&self, message: &WireMessage, mut members: Vec<String>) {
        members.retain(|m| *m != message.sender_id);
        if members.is_empty() {
            return;
        }
        let job = Job {
            conversation_id: message.conversation_id,
            message_id: message.id,
            sender: message.sender_id.clone(),
            recipients: members,
        };
        if self.tx.try_send(job).is_err() {
            tracing::warn!("offline chat notices dropped: queue full or closed");
        }
    }

    /// Takes no more messages; the task handles what is queued and ends.
    pub fn close(&self) {
        self.stop.send_replace(true);
    }
}

impl Worker {
    async fn run(self, mut rx: mpsc::Receiver<Job>, mut stop: watch::Receiver<bool>) {
        let mut rounds = Rounds::new(&mut rx, &mut stop);
        let mut jobs = Vec::with_capacity(ROUND);
        loop {
            if rounds.next(&mut jobs, ROUND).await == 0 {
                return;
            }
            if !rounds.closing && jobs.len() < ROUND {
                tokio::time::sleep(GATHER).await;
                rounds.take_queued(&mut jobs, ROUND);
            }
            if let Err(error) = self.notify(&jobs).await {
                tracing::warn!(%error, messages = jobs.len(), "offline chat notices not sent");
            }
            jobs.clear();
        }
    }

    async fn notify(&self, jobs: &[Job]) -> anyhow::Result<()> {
        let pairs: Vec<(&Job, &str)> = jobs
            .iter()
            .flat_map(|job| job.recipients.iter().map(move |r| (job, r.as_str())))
            .collect();
        let due = tokio::time::timeout(REDIS_TIMEOUT, self.due(&pairs)).await??;
        if due.is_empty() {
            return Ok(());
        }
        let at = notify_store::now();
        // The notice does not quote the message: a notification row
        // outlives the message's edits and deletion.
        let titles: Vec<String> = due
            .iter()
            .map(|(job, _)| format!("New message from {}", job.sender))
            .collect();
        let texts: Vec<String> = due
            .iter()
            .map(|(job, _)| format!("{} wrote to you while you were away.", job.sender))
            .collect();
        let metadata: Vec<String> = due
            .iter()
            .map(|(job, _)| {
                serde_json::json!({
                    "conversation_id": job.conversation_id,
                    "message_id": job.message_id,
                    "sender_id": job.sender,
                })
                .to_string()
            })
            .collect();
        let rows: Vec<NewNotification> = due
            .iter()
            .zip(titles.iter().zip(&texts).zip(&metadata))
            .map(|((_, user), ((title, text), metadata))| NewNotification {
                user_id: user,
                kind: NOTICE_KIND,
                title,
                message: text,
                link: None,
                metadata: Some(metadata),
                created_at: at,
                source: Some(NOTICE_SOURCE),
                idempotency_key: None,
            })
            .collect();
        for chunk in rows.chunks(ROWS_PER_BATCH) {
            let ids = self.store(chunk, at).await?;
            let events = chunk
                .iter()
                .zip(&ids)
                .map(|(row, id)| {
                    let event = Event::Notification {
                        notification: row.stored(*id).into_wire(),
                    };
                    (self.channels.user(row.user_id), event.to_frame())
                })
                .collect();
            if let Some(first) = ids.first() {
                // Refused when the queue is full: the sweep publishes it.
                self.publisher.publish_batch(*first, events);
            }
        }
        Ok(())
    }

    /// The (message, member) pairs to notify: members with no live session
    /// whose throttle for the conversation was free (and is now taken).
    async fn due<'a>(
        &self,
        pairs: &[(&'a Job, &'a str)],
    ) -> redis::RedisResult<Vec<(&'a Job, &'a str)>> {
        let mut conn = self.redis.get().await.map_err(|e| {
            redis::RedisError::from((redis::ErrorKind::Io, "no Redis connection", e.to_string()))
        })?;
        let users: Vec<&str> = pairs.iter().map(|(_, user)| *user).collect();
        let connections = self.sessions.connections(&mut conn, &users).await?;
        let offline: Vec<(&Job, &str)> = pairs
            .iter()
            .zip(connections)
            .filter(|(_, connections)| *connections == 0)
            .map(|(pair, _)| *pair)
            .collect();
        if offline.is_empty() {
            return Ok(offline);
        }
        let throttle_ms = u64::try_from(THROTTLE.as_millis()).unwrap_or(u64::MAX);
        let mut pipe = redis::pipe();
        for (job, user) in &offline {
            pipe.cmd("SET")
                .arg(self.channels.chat_notified(job.conversation_id, user))
                .arg(job.message_id)
                .arg("NX")
                .arg("PX")
                .arg(throttle_ms);
        }
        let taken: Vec<Option<String>> = pipe.query_async(&mut conn).await?;
        Ok(offline
            .into_iter()
            .zip(taken)
            .filter(|(_, taken)| taken.is_some())
            .map(|(pair, _)| pair)
            .collect())
    }

    async fn store(
        &self,
        rows: &[NewNotification<'_>],
        at: chrono::NaiveDateTime,
    ) -> Result<Vec<u64>, StoreError> {
        use diesel_async::AsyncConnection;
        let mut conn = notify_store::pool::get(&self.db).await?;
        conn.transaction(async |conn| {
            let ids = Notification::insert_batch(conn, rows).await?;
            if let (Some(first), Some(last)) = (ids.first(), ids.last()) {
                UnpublishedBatch::record(conn, *first, *last, at).await?;
            }
            Ok::<_, StoreError>(ids)
        })
        .await
    }
}
