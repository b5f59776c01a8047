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
}

#[derive(Clone)]
pub struct Publisher {
    tx: mpsc::Sender<Outgoing>,
    stats: Arc<PublishStats>,
}

impl Publisher {
    /// Starts the publishing task. It ends, after sending what is queued,
    /// once every clone of the returned `Publisher` is dropped.
    pub fn start(pool: RedisPool, capacity: usize) -> (Publisher, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(capacity);
        let stats = Arc::new(PublishStats::default());
        let task = tokio::spawn(run(pool, rx, stats.clone()));
        (Publisher { tx, stats }, task)
    }

    /// Queues one event for `channel`. Never waits.
    pub fn publish(&self, channel: String, payload: String) {
        if self.tx.try_send(Outgoing { channel, payload }).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("publish queue full, event dropped (it stays in MySQL)");
        }
    }

    pub fn stats(&self) -> &PublishStats {
        &self.stats
    }
}

async fn run(pool: RedisPool, mut rx: mpsc::Receiver<Outgoing>, stats: Arc<PublishStats>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let mut attempt = 1;
        loop {
            match send(&pool, &batch).await {
                Ok(()) => {
                    stats
                        .published
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
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
                    tracing::error!(%error, events = batch.len(), "publish failed, giving up");
                    break;
                }
            }
        }
        batch.clear();
    }
}

async fn send(pool: &RedisPool, batch: &[Outgoing]) -> Result<(), String> {
    let mut conn = pool.get().await.map_err(|e| e.to_string())?;
    let mut pipe = redis::pipe();
    for event in batch {
        pipe.publish(&event.channel, &event.payload).ignore();
    }
    pipe.query_async::<()>(&mut conn)
        .await
        .map_err(|e| e.to_string())
}
