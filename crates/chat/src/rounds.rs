//! The loop both chat tasks share: take what has queued up, and at
//! shutdown what was queued before, then stop.

use tokio::sync::{mpsc, watch};

/// A queue read in rounds until `stop` turns true and it is drained.
pub(crate) struct Rounds<'a, T> {
    rx: &'a mut mpsc::Receiver<T>,
    stop: &'a mut watch::Receiver<bool>,
    /// Set once stopping was seen: the queue takes nothing new.
    pub(crate) closing: bool,
}

impl<'a, T> Rounds<'a, T> {
    pub(crate) fn new(rx: &'a mut mpsc::Receiver<T>, stop: &'a mut watch::Receiver<bool>) -> Self {
        Self {
            rx,
            stop,
            closing: false,
        }
    }

    /// Waits for items and moves up to `max` of them into `items`; 0 once
    /// stopping was asked for and everything queued before was taken.
    pub(crate) async fn next(&mut self, items: &mut Vec<T>, max: usize) -> usize {
        loop {
            tokio::select! {
                received = self.rx.recv_many(items, max) => return received,
                _ = self.stop.wait_for(|stop| *stop), if !self.closing => {
                    // What is queued is still received, then nothing.
                    self.closing = true;
                    self.rx.close();
                }
            }
        }
    }

    /// Moves what is queued right now into `items`, up to `max` in all.
    pub(crate) fn take_queued(&mut self, items: &mut Vec<T>, max: usize) {
        while items.len() < max {
            match self.rx.try_recv() {
                Ok(item) => items.push(item),
                Err(_) => break,
            }
        }
    }
}
