//! Publishing events after their change is committed.
//!
//! Requests hand events to one background task through a bounded queue and
//! return at once; the task sends whatever has queued up as pipelines of at
//! most [`MAX_PIPELINE`] events, so a burst of requests costs a few Redis
//! round trips rather than one each, and events leave in the order they
//! were committed.
//!
//! A failed publish never fails the request that caused it (the row is
//! already committed): the pipeline is retried with backoff, and what still
//! fails is counted and logged. New notifications travel as whole outbox
//! batches: a batch is reported published only when every one of its
//! events reached Redis, and a batch the queue cannot take is refused
//! whole, so a batch that lost any event stays in the outbox and the sweep
//! republishes it. Other events (read marks) are recovered by clients from
//! MySQL when they resume.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use std::collections::HashMap;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use notify_protocol::{ChannelNames, Event};

use crate::RedisPool;

/// Most events sent in one pipeline: large enough to amortise the round
/// trip, small enough that Redis answers well within the client's response
/// timeout.
pub const MAX_PIPELINE: usize = 500;
/// Most queue entries taken per round of the publishing task.
const MAX_ENTRIES: usize = 512;
/// Attempts per pipeline before it is given up.
const MAX_ATTEMPTS: u32 = 5;

/// How much may wait for Redis before new events are refused. Both bounds
/// hold: a Redis outage under load cannot grow the process without limit.
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    /// Queue entries (one per event, or one per outbox batch).
    pub entries: usize,
    /// Channel and payload bytes of every queued event together.
    pub bytes: usize,
}

impl QueueLimits {
    pub fn new(entries: usize, bytes: usize) -> Self {
        Self { entries, bytes }
    }
}

#[derive(Debug, Default)]
pub struct PublishStats {
    pub published: AtomicU64,
    pub retried: AtomicU64,
    /// Events given up after every attempt failed.
    pub failed: AtomicU64,
    /// Events refused because the queue was full (Redis away for long).
    pub dropped: AtomicU64,
}

/// One queue entry: a single event, or every event of one outbox batch.
struct Entry {
    events: Vec<(String, String)>,
    /// The outbox batch these events are, if any.
    batch: Option<u64>,
    bytes: usize,
}

#[derive(Clone)]
pub struct Publisher {
    tx: mpsc::Sender<Entry>,
    stats: Arc<PublishStats>,
    queued_bytes: Arc<AtomicUsize>,
    max_bytes: usize,
    stop: Arc<watch::Sender<bool>>,
}

/// Receives the outbox batches whose events all reached Redis.
pub type PublishedBatches = mpsc::Receiver<Vec<u64>>;

impl Publisher {
    /// Starts the publishing task. It ends, after sending what is queued,
    /// once [`Publisher::close`] is called or every clone of the returned
    /// `Publisher` is dropped.
    pub fn start(pool: RedisPool, limits: QueueLimits) -> (Publisher, JoinHandle<()>) {
        Self::start_reporting(pool, limits, None)
    }

    /// Like `start`, and reports on `published` every outbox batch whose
    /// events were all published (dropping reports when it is full: a batch
    /// left in the outbox is only republished, never lost).
    pub fn start_reporting(
        pool: RedisPool,
        limits: QueueLimits,
        published: Option<mpsc::Sender<Vec<u64>>>,
    ) -> (Publisher, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(limits.entries.max(1));
        let stats = Arc::new(PublishStats::default());
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(
            pool,
            rx,
            stopped,
            stats.clone(),
            queued_bytes.clone(),
            published,
        ));
        let publisher = Publisher {
            tx,
            stats,
            queued_bytes,
            max_bytes: limits.bytes,
            stop: Arc::new(stop),
        };
        (publisher, task)
    }

    /// Queues one event for `channel`. Never waits.
    pub fn publish(&self, channel: String, payload: String) {
        self.queue(vec![(channel, payload)], None);
    }

    /// Queues `event` for every connection of `user`; call only after the
    /// change it describes is committed.
    pub fn publish_to_user(&self, channels: &ChannelNames, user: &str, event: &Event) {
        self.publish(channels.user(user), event.to_frame());
    }

    /// Queues `events` as one unit; false when the queue cannot take all of
    /// them, in which case none is queued.
    pub fn publish_all(&self, events: Vec<(String, String)>) -> bool {
        self.queue(events, None)
    }

    /// Queues every event of outbox batch `batch` as one unit; false when
    /// the queue cannot take all of them, in which case none is queued and
    /// the batch stays in the outbox for the sweep.
    pub fn publish_batch(&self, batch: u64, events: Vec<(String, String)>) -> bool {
        self.queue(events, Some(batch))
    }

    fn queue(&self, events: Vec<(String, String)>, batch: Option<u64>) -> bool {
        let count = events.len() as u64;
        let bytes = events.iter().map(|(c, p)| c.len() + p.len()).sum();
        let before = self.queued_bytes.fetch_add(bytes, Ordering::Relaxed);
        let refused = if before + bytes > self.max_bytes && before > 0 {
            Some(bytes)
        } else {
            let entry = Entry {
                events,
                batch,
                bytes,
            };
            self.tx.try_send(entry).err().map(|_| bytes)
        };
        let Some(bytes) = refused else {
            return true;
        };
        self.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
        self.stats.dropped.fetch_add(count, Ordering::Relaxed);
        tracing::warn!(
            events = count,
            "publish queue full, events dropped (they stay in MySQL)"
        );
        false
    }

    /// Takes no more events; the task publishes what is queued and ends.
    pub fn close(&self) {
        self.stop.send_replace(true);
    }

    pub fn stats(&self) -> &PublishStats {
        &self.stats
    }

    /// Bytes of events waiting for Redis.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes.load(Ordering::Relaxed)
    }
}

async fn run(
    pool: RedisPool,
    mut rx: mpsc::Receiver<Entry>,
    mut stop: watch::Receiver<bool>,
    stats: Arc<PublishStats>,
    queued_bytes: Arc<AtomicUsize>,
    published: Option<mpsc::Sender<Vec<u64>>>,
) {
    let mut entries = Vec::with_capacity(MAX_ENTRIES);
    let mut closed = false;
    loop {
        let received = tokio::select! {
            received = rx.recv_many(&mut entries, MAX_ENTRIES) => received,
            // What is already queued is still received, then nothing.
            _ = stopped(&mut stop), if !closed => {
                rx.close();
                closed = true;
                continue;
            }
        };
        if received == 0 {
            break;
        }
        let failed = send_entries(&pool, &entries, &stats).await;
        let done: Vec<u64> = entries
            .iter()
            .zip(&failed)
            .filter(|(_, failed)| !**failed)
            .filter_map(|(entry, _)| entry.batch)
            .collect();
        if let (Some(published), false) = (&published, done.is_empty()) {
            let _ = published.try_send(done);
        }
        let bytes: usize = entries.iter().map(|e| e.bytes).sum();
        queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
        entries.clear();
    }
}

/// Sends the entries' events in order, in pipelines of at most
/// [`MAX_PIPELINE`]; returns, for each entry, whether any of its events was
/// given up.
async fn send_entries(pool: &RedisPool, entries: &[Entry], stats: &PublishStats) -> Vec<bool> {
    let mut failed = vec![false; entries.len()];
    let mut pipeline: Vec<(&str, &str)> = Vec::with_capacity(MAX_PIPELINE);
    // The entries with an event in the pipeline being filled.
    let mut members: Vec<usize> = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        for (channel, payload) in &entry.events {
            if members.last() != Some(&i) {
                members.push(i);
            }
            pipeline.push((channel, payload));
            if pipeline.len() == MAX_PIPELINE {
                if !send_with_retries(pool, &pipeline, stats).await {
                    members.iter().for_each(|&m| failed[m] = true);
                }
                pipeline.clear();
                members.clear();
            }
        }
    }
    if !pipeline.is_empty() && !send_with_retries(pool, &pipeline, stats).await {
        members.iter().for_each(|&m| failed[m] = true);
    }
    failed
}

/// Publishes one pipeline, retrying with backoff; false when given up.
async fn send_with_retries(
    pool: &RedisPool,
    pipeline: &[(&str, &str)],
    stats: &PublishStats,
) -> bool {
    let count = pipeline.len() as u64;
    let mut attempt = 1;
    loop {
        match publish_now(pool, pipeline.iter().copied()).await {
            Ok(()) => {
                stats.published.fetch_add(count, Ordering::Relaxed);
                return true;
            }
            Err(error) if attempt < MAX_ATTEMPTS => {
                stats.retried.fetch_add(count, Ordering::Relaxed);
                tracing::warn!(%error, attempt, events = count, "publish failed, retrying");
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                attempt += 1;
            }
            Err(error) => {
                stats.failed.fetch_add(count, Ordering::Relaxed);
                tracing::error!(%error, events = count, "publish failed, giving up (the sweep republishes new notifications)");
                return false;
            }
        }
    }
}

/// Publishes `(channel, payload)` pairs now, in order per channel: one
/// pipeline on a single Redis; on a cluster one pipeline per slot, sent
/// concurrently (a pipeline must stay inside one slot). Callers keep calls
/// to at most [`MAX_PIPELINE`] events.
pub async fn publish_now<'a>(
    pool: &RedisPool,
    events: impl Iterator<Item = (&'a str, &'a str)>,
) -> Result<(), String> {
    if !pool.target().is_cluster() {
        let mut conn = pool.get().await.map_err(|e| e.to_string())?;
        let mut pipe = redis::pipe();
        for (channel, payload) in events {
            pool.publish_in(&mut pipe, channel, payload).ignore();
        }
        return pipe
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| e.to_string());
    }
    let mut by_slot: HashMap<u16, redis::Pipeline> = HashMap::new();
    for (channel, payload) in events {
        let pipe = by_slot
            .entry(crate::slot(channel.as_bytes()))
            .or_insert_with(redis::pipe);
        pool.publish_in(pipe, channel, payload).ignore();
    }
    // A slot whose pipeline failed is tried again on its own (its master
    // may be failing over), so the slots already published are not sent
    // twice by a retry of the whole call.
    let sends = by_slot.into_values().map(|pipe| {
        let pool = pool.clone();
        async move {
            let mut attempt = 1;
            loop {
                let result = match pool.get().await {
                    Ok(mut conn) => pipe.query_async::<()>(&mut conn).await,
                    Err(error) => Err(redis::RedisError::from((
                        redis::ErrorKind::Io,
                        "no Redis connection",
                        error.to_string(),
                    ))),
                };
                if result.is_ok() || attempt == SLOT_ATTEMPTS {
                    return result;
                }
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    futures_util::future::join_all(sends)
        .await
        .into_iter()
        .collect::<Result<Vec<()>, _>>()
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Tries of one slot's pipeline within one [`publish_now`] on a cluster.
const SLOT_ATTEMPTS: u32 = 3;

/// Resolves once stopping is asked for (or the sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Redis nobody answers on: the publishing task stays busy retrying
    /// its first entry, so what is queued stays counted.
    fn unreachable_pool() -> RedisPool {
        crate::build_pool(&crate::RedisTarget::Single("redis://127.0.0.1:1".into())).unwrap()
    }

    fn events(count: usize, size: usize) -> Vec<(String, String)> {
        (0..count)
            .map(|i| (format!("user:{i}"), "x".repeat(size)))
            .collect()
    }

    #[tokio::test]
    async fn the_queue_is_bounded_by_bytes_and_refuses_batches_whole() {
        let (reports_tx, mut reports) = mpsc::channel(8);
        let (publisher, task) = Publisher::start_reporting(
            unreachable_pool(),
            QueueLimits::new(1000, 10_000),
            Some(reports_tx),
        );
        // An entry larger than the bound is taken while nothing else waits.
        assert!(publisher.publish_batch(1, events(3, 5_000)));
        assert!(!publisher.publish_batch(2, events(2, 10)));
        assert_eq!(publisher.stats().dropped.load(Ordering::Relaxed), 2);
        assert!(publisher.queued_bytes() >= 15_000);
        drop(publisher);
        task.await.unwrap();
        // Given up after every attempt: never reported as published.
        assert!(reports.try_recv().is_err());
    }
}
