//! Write-behind batching of new notifications.
//!
//! Each request hands its rows to one batching task and waits for them to be
//! committed. While a transaction is in flight, requests that arrive queue
//! up; the next transaction takes all of them at once: one multi-row INSERT
//! and one commit for many requests. Under light load a request is written
//! alone and at once (no artificial delay); under heavy load the batches grow
//! by themselves, which is what makes MySQL keep up. A request is answered
//! only after its rows are durable.
//!
//! A batch that fails for a reason other than MySQL being away is retried
//! one request at a time, so one bad request cannot fail its neighbours.

use std::sync::Arc;

use diesel_async::AsyncConnection;
use notify_protocol::{ChannelNames, Event};
use notify_store::{DbPool, IdempotencyKey, NewNotification, Notification, StoreError};
use tokio::sync::{mpsc, oneshot, Semaphore};

use notify_bus::Publisher;

/// Rows in one INSERT; keeps a statement well under MySQL's 65,535
/// placeholders (9 columns per row).
const MAX_ROWS: usize = 2000;

/// What a request stores: the same content for each recipient.
pub struct Submission {
    pub recipients: Vec<String>,
    pub kind: String,
    pub title: String,
    pub message: String,
    pub link: Option<String>,
    pub metadata: Option<String>,
    /// The API key that sent it.
    pub source: String,
    /// The claimed `Idempotency-Key`, completed in the same transaction.
    pub idempotency_key: Option<String>,
    pub reply: Reply,
}

/// The shape of the success response, stored with an idempotency key.
#[derive(Clone, Copy)]
pub enum Reply {
    /// `{"ids":[...]}`
    Ids,
    /// `{"id":N}`
    Id,
}

impl Reply {
    fn body(self, ids: &[u64]) -> String {
        match self {
            Reply::Ids => serde_json::json!({ "ids": ids }).to_string(),
            Reply::Id => serde_json::json!({ "id": ids.first() }).to_string(),
        }
    }
}

struct Job {
    submission: Submission,
    done: oneshot::Sender<Result<String, StoreError>>,
}

#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::Sender<Job>,
}

struct Flusher {
    db: DbPool,
    publisher: Publisher,
    channels: ChannelNames,
}

impl Batcher {
    /// Starts the batching task; at most `in_flight` transactions run at
    /// once. The task ends when every `Batcher` clone is dropped.
    pub fn start(
        db: DbPool,
        publisher: Publisher,
        channels: ChannelNames,
        in_flight: usize,
    ) -> Batcher {
        let (tx, rx) = mpsc::channel(8192);
        let flusher = Arc::new(Flusher {
            db,
            publisher,
            channels,
        });
        tokio::spawn(collect(
            rx,
            flusher,
            Arc::new(Semaphore::new(in_flight.max(1))),
        ));
        Batcher { tx }
    }

    /// Stores the submission; resolves with the response body once its rows
    /// are committed (and their events queued for publishing).
    pub async fn submit(&self, submission: Submission) -> Result<String, StoreError> {
        let (done, result) = oneshot::channel();
        self.tx
            .send(Job { submission, done })
            .await
            .map_err(|_| StoreError::Unavailable("writer stopped".into()))?;
        result
            .await
            .map_err(|_| StoreError::Unavailable("writer stopped".into()))?
    }
}

async fn collect(mut rx: mpsc::Receiver<Job>, flusher: Arc<Flusher>, slots: Arc<Semaphore>) {
    let mut carry: Option<Job> = None;
    loop {
        let first = match carry.take() {
            Some(job) => job,
            None => match rx.recv().await {
                Some(job) => job,
                None => return,
            },
        };
        // Waiting for a free transaction slot is what lets a batch grow.
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut rows = first.submission.recipients.len();
        let mut batch = vec![first];
        while let Ok(job) = rx.try_recv() {
            if rows + job.submission.recipients.len() > MAX_ROWS {
                carry = Some(job);
                break;
            }
            rows += job.submission.recipients.len();
            batch.push(job);
        }
        let flusher = flusher.clone();
        tokio::spawn(async move {
            flusher.flush(batch).await;
            drop(permit);
        });
    }
}

impl Flusher {
    async fn flush(&self, batch: Vec<Job>) {
        let subs: Vec<&Submission> = batch.iter().map(|j| &j.submission).collect();
        let result = self.write(&subs).await;
        match result {
            Ok(bodies) => {
                for (job, body) in batch.into_iter().zip(bodies) {
                    let _ = job.done.send(Ok(body));
                }
            }
            Err(error) if batch.len() == 1 => {
                if let Some(job) = batch.into_iter().next() {
                    let _ = job.done.send(Err(error));
                }
            }
            Err(error) if error.is_unavailable() => {
                let message = error.to_string();
                for job in batch {
                    let _ = job.done.send(Err(StoreError::Unavailable(message.clone())));
                }
            }
            Err(error) => {
                tracing::warn!(%error, requests = batch.len(), "batch failed, retrying requests one by one");
                for job in batch {
                    let result = self
                        .write(&[&job.submission])
                        .await
                        .map(|mut b| b.remove(0));
                    let _ = job.done.send(result);
                }
            }
        }
    }

    /// One transaction for all submissions; returns each one's response
    /// body and publishes the events after the commit.
    async fn write(&self, subs: &[&Submission]) -> Result<Vec<String>, StoreError> {
        let created_at = notify_store::now();
        let rows: Vec<NewNotification> = subs
            .iter()
            .flat_map(|s| {
                s.recipients
                    .iter()
                    .enumerate()
                    .map(move |(i, user_id)| NewNotification {
                        user_id,
                        kind: &s.kind,
                        title: &s.title,
                        message: &s.message,
                        link: s.link.as_deref(),
                        metadata: s.metadata.as_deref(),
                        created_at,
                        source: Some(&s.source),
                        idempotency_key: s.idempotency_key.as_ref().map(|key| format!("{key}#{i}")),
                    })
            })
            .collect();
        let mut conn = notify_store::pool::get(&self.db).await?;
        let (ids, bodies) = conn
            .transaction(async |conn| {
                let ids = Notification::insert_batch(conn, &rows).await?;
                let mut bodies = Vec::with_capacity(subs.len());
                let mut offset = 0;
                for s in subs {
                    let own = &ids[offset..offset + s.recipients.len()];
                    offset += s.recipients.len();
                    let body = s.reply.body(own);
                    if let Some(key) = &s.idempotency_key {
                        IdempotencyKey::complete(conn, &s.source, key, &body).await?;
                    }
                    bodies.push(body);
                }
                Ok::<_, StoreError>((ids, bodies))
            })
            .await?;
        drop(conn);
        for (row, id) in rows.iter().zip(ids) {
            let event = Event::Notification {
                notification: row.stored(id).into_wire(),
            };
            self.publisher
                .publish(self.channels.user(row.user_id), event.to_frame());
        }
        Ok(bodies)
    }
}
