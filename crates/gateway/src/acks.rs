//! Delivery acknowledgements: clients ack the notifications they received
//! and the first ack sets `delivered_at`. Acks from all connections of a
//! node are written together, a batch at most every few hundred
//! milliseconds, not one UPDATE per ack.

use std::collections::HashMap;
use std::time::Duration;

use notify_store::{DbPool, Notification};
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

async fn write(
    db: DbPool,
    mut rx: mpsc::Receiver<(String, Vec<u64>)>,
    mut stop: watch::Receiver<bool>,
) {
    let mut pending: HashMap<String, Vec<u64>> = HashMap::new();
    let mut count = 0;
    let mut closed = false;
    loop {
        let flush_by = tokio::time::sleep(FLUSH_EVERY);
        tokio::pin!(flush_by);
        loop {
            tokio::select! {
                // What is already queued is still received, then `None`.
                _ = stopped(&mut stop), if !closed => {
                    rx.close();
                    closed = true;
                }
                received = rx.recv() => match received {
                    Some((user, ids)) => {
                        count += ids.len();
                        pending.entry(user).or_default().extend(ids);
                        if count >= FLUSH_AT {
                            break;
                        }
                    }
                    None => {
                        flush(&db, &mut pending).await;
                        return;
                    }
                },
                _ = &mut flush_by, if !pending.is_empty() => break,
            }
        }
        flush(&db, &mut pending).await;
        count = 0;
    }
}

async fn flush(db: &DbPool, pending: &mut HashMap<String, Vec<u64>>) {
    if pending.is_empty() {
        return;
    }
    let acks: Vec<(String, Vec<u64>)> = pending.drain().collect();
    let result = match notify_store::pool::get(db).await {
        Ok(mut conn) => Notification::mark_delivered(&mut conn, &acks, notify_store::now()).await,
        Err(e) => Err(e),
    };
    if let Err(error) = result {
        tracing::warn!(%error, users = acks.len(), "could not record delivery acks");
    }
}

/// Resolves once stopping is asked for (or the sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}
