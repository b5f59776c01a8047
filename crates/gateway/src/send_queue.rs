//! The bounded queue of frames waiting to be written to one connection.
//!
//! Delivery never waits on a client: the subscriber pushes into the queue
//! and moves on, and only the connection's own task awaits its socket. A
//! client that stops reading fills its queue and is marked for closing
//! (1013) instead of holding up anyone else or growing the node.
//!
//! An empty queue allocates nothing, which matters with 10,000 idle
//! connections on a node.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytestring::ByteString;
use chrono::NaiveDateTime;
use tokio::sync::Notify;

/// Why a connection's own task must close it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseSignal {
    /// The client did not keep up with its frames (1013).
    Stalled,
    /// The node is shutting down (1012); queued frames are sent first.
    Restart,
    /// The token was revoked or the user disconnected (1008); nothing more
    /// is sent.
    Revoked,
    /// The user signed this session out (1008); nothing more is sent.
    SessionRevoked,
}

#[derive(Debug, Default)]
struct State {
    frames: VecDeque<ByteString>,
    bytes: usize,
    close: Option<CloseSignal>,
    /// The user's channel is subscribed on Redis.
    subscribed: bool,
    /// The bus was lost and is back: catch up from MySQL on what was
    /// created since this time.
    resync: Option<NaiveDateTime>,
    /// The connection was greeted before its channel was subscribed: once
    /// it is, catch up on what was created since this time, which the live
    /// path may have missed.
    resync_once_subscribed: Option<NaiveDateTime>,
}

/// What the connection task should do next.
pub enum Next {
    Send(ByteString),
    Close(CloseSignal),
    /// Backfill from MySQL everything created since then.
    Resync(NaiveDateTime),
    Idle,
}

#[derive(Debug, Default)]
pub struct SendQueue {
    state: Mutex<State>,
    notify: Notify,
}

impl SendQueue {
    /// Queues a frame; false when the connection is stalled or closing and
    /// the frame was not queued.
    pub fn push(&self, frame: &ByteString, max_frames: usize, max_bytes: usize) -> bool {
        {
            let mut state = self.lock();
            if state.close.is_some() {
                return false;
            }
            if state.frames.len() >= max_frames || state.bytes + frame.len() > max_bytes {
                state.close = Some(CloseSignal::Stalled);
                state.frames = VecDeque::new();
                state.bytes = 0;
            } else {
                state.bytes += frame.len();
                state.frames.push_back(frame.clone());
            }
        }
        self.notify.notify_one();
        true
    }

    pub fn close(&self, signal: CloseSignal) {
        {
            let mut state = self.lock();
            match (state.close, signal) {
                // Revocation overrides a pending restart: its frames must
                // not go out any more.
                (None, _)
                | (
                    Some(CloseSignal::Restart),
                    CloseSignal::Revoked | CloseSignal::SessionRevoked,
                ) => state.close = Some(signal),
                _ => {}
            }
        }
        self.notify.notify_one();
    }

    pub fn set_subscribed(&self, subscribed: bool) {
        {
            let mut state = self.lock();
            state.subscribed = subscribed;
            if !subscribed {
                return;
            }
            if let Some(since) = state.resync_once_subscribed.take() {
                state.resync = Some(state.resync.map_or(since, |s| s.min(since)));
            }
        }
        self.notify.notify_one();
    }

    /// Unless the channel is subscribed already, catches up from `since`
    /// once it is; true if it is subscribed now.
    pub fn resync_once_subscribed(&self, since: NaiveDateTime) -> bool {
        let mut state = self.lock();
        if !state.subscribed {
            state.resync_once_subscribed = Some(since);
        }
        state.subscribed
    }

    /// Asks the connection to catch up from MySQL; an earlier pending
    /// request is widened, never narrowed.
    pub fn resync(&self, since: NaiveDateTime) {
        {
            let mut state = self.lock();
            state.resync = Some(state.resync.map_or(since, |s| s.min(since)));
        }
        self.notify.notify_one();
    }

    pub fn is_subscribed(&self) -> bool {
        self.lock().subscribed
    }

    /// The next thing to do: a stall or a revocation closes at once, a
    /// restart only after the queue is flushed.
    pub fn next(&self) -> Next {
        let mut state = self.lock();
        if let Some(
            signal @ (CloseSignal::Stalled | CloseSignal::Revoked | CloseSignal::SessionRevoked),
        ) = state.close
        {
            return Next::Close(signal);
        }
        if let Some(since) = state.resync.take() {
            return Next::Resync(since);
        }
        if let Some(frame) = state.frames.pop_front() {
            state.bytes -= frame.len();
            if state.frames.is_empty() {
                // Give back the buffer a burst grew.
                state.frames = VecDeque::new();
            }
            return Next::Send(frame);
        }
        match state.close {
            Some(signal) => Next::Close(signal),
            None => Next::Idle,
        }
    }

    /// Resolves after the next push, close or subscription change (or at
    /// once if one happened since the last wait).
    pub async fn changed(&self) {
        self.notify.notified().await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue in a state
        // worse than "some frames lost", so recover rather than propagate.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_marks_stalled_and_frees_the_queue() {
        let queue = SendQueue::default();
        let frame = ByteString::from_static("0123456789");
        assert!(queue.push(&frame, 2, 1000));
        assert!(queue.push(&frame, 2, 1000));
        assert!(queue.push(&frame, 2, 1000)); // third overflows
        assert!(matches!(queue.next(), Next::Close(CloseSignal::Stalled)));
        assert!(!queue.push(&frame, 2, 1000));
    }

    #[test]
    fn byte_limit_counts_too() {
        let queue = SendQueue::default();
        let frame = ByteString::from_static("0123456789");
        assert!(queue.push(&frame, 100, 15));
        queue.push(&frame, 100, 15);
        assert!(matches!(queue.next(), Next::Close(CloseSignal::Stalled)));
    }

    #[test]
    fn restart_flushes_first() {
        let queue = SendQueue::default();
        queue.push(&ByteString::from_static("a"), 10, 100);
        queue.close(CloseSignal::Restart);
        assert!(matches!(queue.next(), Next::Send(_)));
        assert!(matches!(queue.next(), Next::Close(CloseSignal::Restart)));
    }

    #[test]
    fn greeted_before_subscribed_catches_up_once_subscribed() {
        let queue = SendQueue::default();
        let since = chrono::DateTime::from_timestamp(1_000, 0)
            .unwrap()
            .naive_utc();
        assert!(!queue.resync_once_subscribed(since));
        assert!(matches!(queue.next(), Next::Idle));
        queue.set_subscribed(false);
        assert!(matches!(queue.next(), Next::Idle));
        queue.set_subscribed(true);
        assert!(matches!(queue.next(), Next::Resync(at) if at == since));
        queue.set_subscribed(true);
        assert!(matches!(queue.next(), Next::Idle));
        assert!(queue.resync_once_subscribed(since));
        assert!(matches!(queue.next(), Next::Idle));
    }

    #[test]
    fn revocation_closes_at_once_even_when_restarting() {
        let queue = SendQueue::default();
        queue.push(&ByteString::from_static("a"), 10, 100);
        queue.close(CloseSignal::Restart);
        queue.close(CloseSignal::Revoked);
        assert!(matches!(queue.next(), Next::Close(CloseSignal::Revoked)));
        assert!(!queue.push(&ByteString::from_static("b"), 10, 100));
    }
}
