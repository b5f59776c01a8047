//! Publishing events after their change is committed.
//!
//! Requests hand events to one background task through a bounded queue and
//! return at once; the task sends whatever has queued up as one pipeline, so
//! a burst of requests costs one Redis round trip rather than one each, and
//! events leave in the order they were committed.
//!
//! A failed publish never fails the request that caused it (the row is
//! already committed): the batch is retried with backoff, and what still
//! fails is counted and logged. Clients recover such events from MySQL when
//! they resume.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::RedisPool;

/// Most events sent in one pipeline.
const MAX_BATCH: usize = 512;
/// Attempts per batch before it is given up.
const MAX_ATTEMPTS: u32 = 5;

#[derive(Debug, Default)]
pub struct PublishStats {
    pub published: AtomicU64,
    pub retried: AtomicU64,
    /// Events given up after every attempt failed.
    pub failed: AtomicU64,
    /// Events refused because the queue was full (Redis away for long).
    pub dropped: AtomicU64,
}

struct Outgoing {
    channel: String,
    payload: String,
    /// For new-notification events: the outbox batch they belong to, and
    /// whether this is the batch's last event.
    batch: Option<(u64, bool)>,
}

#[derive(Clone)]
pub struct Publisher {
    tx: mpsc::Sender<Outgoing>,
    stats: Arc<PublishStats>,
}

/// Receives the outbox batches whose events all reached Redis.
pub type PublishedBatches = mpsc::Receiver<Vec<u64>>;

impl Publisher {
    /// Starts the publishing task. It ends, after sending what is queued,
    /// once every clone of the returned `Publisher` is dropped.
    pub fn start(pool: RedisPool, capacity: usize) -> (Publisher, JoinHandle<()>) {
        Self::start_reporting(pool, capacity, None)
    }

    /// Like `start`, and reports on `published` every outbox batch whose
    /// events were all published (dropping reports when it is full: a batch
    /// left in the outbox is only republished, never lost).
    pub fn start_reporting(
        pool: RedisPool,
        capacity: usize,
        published: Option<mpsc::Sender<Vec<u64>>>,
    ) -> (Publisher, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(capacity);
        let stats = Arc::new(PublishStats::default());
        let task = tokio::spawn(run(pool, rx, stats.clone(), published));
        (Publisher { tx, stats }, task)
    }

    /// Queues one event for `channel`. Never waits.
    pub fn publish(&self, channel: String, payload: String) {
        self.queue(Outgoing {
            channel,
            payload,
            batch: None,
        });
    }

    /// Queues a new notification's event, one of outbox batch `batch`;
    /// `last` marks the batch's final event.
    pub fn publish_notification(&self, channel: String, payload: String, batch: u64, last: bool) {
        self.queue(Outgoing {
            channel,
            payload,
            batch: Some((batch, last)),
        });
    }

    fn queue(&self, event: Outgoing) {
        if self.tx.try_send(event).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("publish queue full, event dropped (it stays in MySQL)");
        }
    }

    pub fn stats(&self) -> &PublishStats {
        &self.stats
    }
}

async fn run(
    pool: RedisPool,
    mut rx: mpsc::Receiver<Outgoing>,
    stats: Arc<PublishStats>,
    published: Option<mpsc::Sender<Vec<u64>>>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // Outbox batches with an event that could not be published: never
    // reported, so the sweep republishes them.
    let mut failed: std::collections::HashSet<u64> = std::collections::HashSet::new();
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let mut attempt = 1;
        loop {
            let events = batch
                .iter()
                .map(|e| (e.channel.as_str(), e.payload.as_str()));
            match publish_now(&pool, events).await {
                Ok(()) => {
                    stats
                        .published
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    let mut done = Vec::new();
                    for (token, last) in batch.iter().filter_map(|e| e.batch) {
                        if last && !failed.remove(&token) {
                            done.push(token);
                        }
                    }
                    if let (Some(published), false) = (&published, done.is_empty()) {
                        let _ = published.try_send(done);
                    }
                    break;
                }
                Err(error) if attempt < MAX_ATTEMPTS => {
                    stats
                        .retried
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    tracing::warn!(%error, attempt, events = batch.len(), "publish failed, retrying");
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                    attempt += 1;
                }
                Err(error) => {
                    stats
                        .failed
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    tracing::error!(%error, events = batch.len(), "publish failed, giving up (the sweep republishes)");
                    break;
                }
            }
        }
        batch.clear();
    }
}

/// Publishes `(channel, payload)` pairs as one pipeline, now.
pub async fn publish_now<'a>(
    pool: &RedisPool,
    events: impl Iterator<Item = (&'a str, &'a str)>,
) -> Result<(), String> {
    let mut conn = pool.get().await.map_err(|e| e.to_string())?;
    let mut pipe = redis::pipe();
    for (channel, payload) in events {
        pipe.publish(channel, payload).ignore();
    }
    pipe.query_async::<()>(&mut conn)
        .await
        .map_err(|e| e.to_string())
}
