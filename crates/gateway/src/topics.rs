//! Who subscribes to which topic on this node: the topic's channel is held
//! while at least one local connection is a member, and every event that
//! arrives on it is queued, as the same bytes, on each member.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytestring::ByteString;
use tokio::sync::Notify;

use crate::interest::{Channel, Interest};
use crate::send_queue::SendQueue;

struct Member {
    conn: u64,
    queue: Arc<SendQueue>,
}

#[derive(Default)]
struct Topic {
    members: Vec<Member>,
    /// The subscriber confirmed the channel is subscribed.
    subscribed: bool,
}

pub struct Topics {
    topics: Mutex<HashMap<Arc<str>, Topic>>,
    interest: Arc<Interest>,
    /// Woken whenever subscriptions are confirmed or lost.
    confirmations: Notify,
    max_frames: usize,
    max_bytes: usize,
}

impl Topics {
    pub fn new(interest: Arc<Interest>, max_frames: usize, max_bytes: usize) -> Self {
        Self {
            topics: Mutex::default(),
            interest,
            confirmations: Notify::new(),
            max_frames,
            max_bytes,
        }
    }

    /// Adds connection `conn` to `topic`; returns the topic's shared name,
    /// or None if it was a member already.
    pub fn join(&self, topic: &str, conn: u64, queue: &Arc<SendQueue>) -> Option<Arc<str>> {
        let mut topics = self.lock();
        let key: Arc<str> = match topics.get_key_value(topic) {
            Some((key, entry)) => {
                if entry.members.iter().any(|m| m.conn == conn) {
                    return None;
                }
                key.clone()
            }
            None => {
                let key: Arc<str> = Arc::from(topic);
                self.interest.mark(Channel::Topic(key.clone()));
                key
            }
        };
        topics.entry(key.clone()).or_default().members.push(Member {
            conn,
            queue: queue.clone(),
        });
        Some(key)
    }

    /// Removes connection `conn` from `topic`; false if it was no member.
    pub fn leave(&self, topic: &str, conn: u64) -> bool {
        let mut topics = self.lock();
        let Some((key, entry)) = topics.get_key_value(topic) else {
            return false;
        };
        let key = key.clone();
        let Some(at) = entry.members.iter().position(|m| m.conn == conn) else {
            return false;
        };
        if let Some(entry) = topics.get_mut(&key) {
            entry.members.swap_remove(at);
            if entry.members.is_empty() {
                topics.remove(&key);
                self.interest.mark(Channel::Topic(key));
            }
        }
        true
    }

    /// Waits up to `timeout` for the topic's channel to be subscribed;
    /// false if it is not by then.
    pub async fn confirmed(&self, topic: &str, timeout: Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.confirmations.notified();
                tokio::pin!(notified);
                // Registered before checking, so a confirmation between the
                // check and the wait is not missed.
                notified.as_mut().enable();
                if self.is_subscribed(topic) {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }

    fn is_subscribed(&self, topic: &str) -> bool {
        self.lock().get(topic).is_some_and(|t| t.subscribed)
    }

    /// Queues `frame` on every member of `topic`; returns how many took it.
    pub fn deliver(&self, topic: &str, frame: &ByteString) -> usize {
        let topics = self.lock();
        let Some(entry) = topics.get(topic) else {
            return 0;
        };
        entry
            .members
            .iter()
            .filter(|m| m.queue.push(frame, self.max_frames, self.max_bytes))
            .count()
    }

    pub fn wants(&self, topic: &str) -> bool {
        self.lock().contains_key(topic)
    }

    pub fn wanted(&self) -> Vec<Arc<str>> {
        self.lock().keys().cloned().collect()
    }

    /// Records that these topics' channels are (or are no longer)
    /// subscribed, and wakes the connections waiting for them.
    pub fn set_subscribed<'a>(
        &self,
        topics: impl IntoIterator<Item = &'a Arc<str>>,
        subscribed: bool,
    ) {
        {
            let mut map = self.lock();
            for topic in topics {
                if let Some(entry) = map.get_mut(topic) {
                    entry.subscribed = subscribed;
                }
            }
        }
        self.confirmations.notify_waiters();
    }

    /// The Redis connection is gone: nothing is subscribed any more.
    pub fn clear_subscribed(&self) {
        for entry in self.lock().values_mut() {
            entry.subscribed = false;
        }
    }

    /// (topic, local subscriptions), the largest first, at most `limit`.
    pub fn subscriptions(&self, limit: usize) -> (usize, Vec<(Arc<str>, usize)>) {
        let topics = self.lock();
        let mut counts: Vec<(Arc<str>, usize)> = topics
            .iter()
            .map(|(topic, entry)| (topic.clone(), entry.members.len()))
            .collect();
        counts.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        counts.truncate(limit);
        (topics.len(), counts)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, Topic>> {
        self.topics.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::send_queue::Next;

    #[test]
    fn members_are_counted_and_channels_marked() {
        let interest = Arc::new(Interest::default());
        let topics = Topics::new(interest.clone(), 10, 1000);
        let (a, b): (Arc<SendQueue>, Arc<SendQueue>) = Default::default();
        let key = topics.join("status", 1, &a).unwrap();
        assert!(topics.join("status", 1, &a).is_none());
        topics.join("status", 2, &b).unwrap();
        assert_eq!(interest.take(), vec![Channel::Topic(key.clone())]);
        assert_eq!(topics.deliver("status", &ByteString::from_static("e")), 2);
        assert!(matches!(a.next(), Next::Send(_)));
        assert!(topics.leave("status", 1));
        assert!(!topics.leave("status", 1));
        assert!(interest.take().is_empty());
        assert_eq!(topics.deliver("status", &ByteString::from_static("e")), 1);
        assert!(matches!(a.next(), Next::Idle));
        assert!(topics.leave("status", 2));
        assert!(!topics.wants("status"));
        assert_eq!(interest.take(), vec![Channel::Topic(key)]);
    }

    #[tokio::test]
    async fn waits_for_confirmation() {
        let topics = Arc::new(Topics::new(Arc::default(), 10, 1000));
        let queue = Arc::new(SendQueue::default());
        let key = topics.join("t", 1, &queue).unwrap();
        assert!(!topics.confirmed("t", Duration::from_millis(10)).await);
        let waiter = {
            let topics = topics.clone();
            tokio::spawn(async move { topics.confirmed("t", Duration::from_secs(10)).await })
        };
        tokio::task::yield_now().await;
        topics.set_subscribed([&key], true);
        assert!(waiter.await.unwrap());
    }
}
