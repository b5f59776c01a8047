//! The loop shared by the node's background writers (delivery acks, the
//! connection log): take items from a bounded queue, write them in
//! batches, and at shutdown write what was queued before stopping.

use std::time::Duration;

use tokio::sync::{mpsc, watch};

/// A batch being gathered.
pub trait Batch: Default {
    type Item;
    /// Adds `item`; true when the batch should be written now.
    fn add(&mut self, item: Self::Item) -> bool;
    fn is_empty(&self) -> bool;
}

/// Receives items until `stop` turns true and the queue is drained, handing
/// each batch to `write`: when it is full, or `every` after the last write
/// if anything waits.
pub async fn write_batches<B, F, W>(
    mut rx: mpsc::Receiver<B::Item>,
    mut stop: watch::Receiver<bool>,
    every: Duration,
    mut write: W,
) where
    B: Batch,
    W: FnMut(B) -> F,
    F: std::future::Future<Output = ()>,
{
    let mut batch = B::default();
    let mut closed = false;
    loop {
        let flush_by = tokio::time::sleep(every);
        tokio::pin!(flush_by);
        loop {
            tokio::select! {
                // What is already queued is still received, then `None`.
                _ = stopped(&mut stop), if !closed => {
                    rx.close();
                    closed = true;
                }
                received = rx.recv() => match received {
                    Some(item) => {
                        if batch.add(item) {
                            break;
                        }
                    }
                    None => {
                        if !batch.is_empty() {
                            write(batch).await;
                        }
                        return;
                    }
                },
                _ = &mut flush_by, if !batch.is_empty() => break,
            }
        }
        if !batch.is_empty() {
            write(std::mem::take(&mut batch)).await;
        }
    }
}

/// Resolves once stopping is asked for (or the sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}
