//! Delivery acknowledgements: clients ack the notifications they received
//! and the first ack sets `delivered_at`. Acks from all connections of a
//! node are written together, a batch at most every few hundred
//! milliseconds, not one UPDATE per ack.

use std::collections::HashMap;
use std::time::Duration;

use notify_store::{DbPool, Notification};

use crate::batching::{write_batches, Batch};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Longest an ack waits before being written.
const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// Ids that trigger an early write.
const FLUSH_AT: usize = 5000;

#[derive(Clone)]
pub struct Acks {
    tx: mpsc::Sender<(String, Vec<u64>)>,
    stop: std::sync::Arc<watch::Sender<bool>>,
}

impl Acks {
    /// Starts the writer; it ends after [`Acks::close`], once everything
    /// queued before is written.
    pub fn start(db: DbPool) -> (Acks, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(4096);
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(write(db, rx, stopped));
        let acks = Acks {
            tx,
            stop: std::sync::Arc::new(stop),
        };
        (acks, task)
    }

    /// Takes no more acks; the writer writes what is queued and ends.
    pub fn close(&self) {
        self.stop.send_replace(true);
    }

    /// Queues `user`'s acks; false if the queue is full (the ack is lost,
    /// which only leaves `delivered_at` unset).
    pub fn record(&self, user: &str, ids: Vec<u64>) -> bool {
        self.tx.try_send((user.to_owned(), ids)).is_ok()
    }
}

/// Acks gathered per user.
#[derive(Default)]
struct AckBatch {
    acks: HashMap<String, Vec<u64>>,
    ids: usize,
}

impl Batch for AckBatch {
    type Item = (String, Vec<u64>);

    fn add(&mut self, (user, ids): Self::Item) -> bool {
        self.ids += ids.len();
        self.acks.entry(user).or_default().extend(ids);
        self.ids >= FLUSH_AT
    }

    fn is_empty(&self) -> bool {
        self.acks.is_empty()
    }
}

async fn write(db: DbPool, rx: mpsc::Receiver<(String, Vec<u64>)>, stop: watch::Receiver<bool>) {
    write_batches(rx, stop, FLUSH_EVERY, |batch: AckBatch| {
        let db = db.clone();
        async move { flush(&db, batch.acks).await }
    })
    .await
}

async fn flush(db: &DbPool, pending: HashMap<String, Vec<u64>>) {
    let acks: Vec<(String, Vec<u64>)> = pending.into_iter().collect();
    let result = match notify_store::pool::get(db).await {
        Ok(mut conn) => Notification::mark_delivered(&mut conn, &acks, notify_store::now()).await,
        Err(e) => Err(e),
    };
    if let Err(error) = result {
        tracing::warn!(%error, users = acks.len(), "could not record delivery acks");
    }
}
