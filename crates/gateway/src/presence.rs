//! This node's share of presence: how many local connections each user
//! has in each presence topic, reported to Redis (`notify_bus::presence`)
//! in batches by the node's liveness task ([`crate::liveness`]).
//!
//! A user's last local connection leaving is reported only after a grace
//! period: a reconnect (here or on another node) within it changes no total
//! to zero, so subscribers see no `left`/`joined` flap.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use notify_bus::presence::{Change, MAX_CHANGES_PER_CALL};
use notify_bus::{PresenceStore, RedisConnection};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::liveness::Reported;

type Key = (Arc<str>, Arc<str>);

#[derive(Default)]
struct Entry {
    /// Local connections of the user in the topic.
    count: i64,
    /// What Redis holds for this node.
    reported: i64,
    /// When a count of zero is reported (the grace period ends).
    leave_at: Option<Instant>,
}

#[derive(Default)]
struct Local {
    entries: HashMap<Key, Entry>,
    /// Entries whose count differs, or may differ, from what is reported.
    dirty: HashSet<Key>,
}

pub struct Presence {
    store: PresenceStore,
    grace: Duration,
    local: Mutex<Local>,
    changed: Notify,
}

impl Presence {
    pub fn new(store: PresenceStore, grace: Duration) -> Self {
        Self {
            store,
            grace,
            local: Mutex::default(),
            changed: Notify::new(),
        }
    }

    /// A local connection of `user` joined `topic`.
    pub fn join(&self, topic: &Arc<str>, user: &Arc<str>) {
        let key = (topic.clone(), user.clone());
        {
            let mut local = self.local();
            let entry = local.entries.entry(key.clone()).or_default();
            entry.count += 1;
            entry.leave_at = None;
            local.dirty.insert(key);
        }
        self.changed.notify_one();
    }

    /// A local connection of `user` left `topic`.
    pub fn leave(&self, topic: &Arc<str>, user: &Arc<str>) {
        let key = (topic.clone(), user.clone());
        {
            let mut local = self.local();
            let Some(entry) = local.entries.get_mut(&key) else {
                return;
            };
            entry.count = (entry.count - 1).max(0);
            if entry.count == 0 {
                entry.leave_at = Some(Instant::now() + self.grace);
            }
            local.dirty.insert(key);
        }
        self.changed.notify_one();
    }

    /// Resolves after the next join or leave.
    pub async fn changed(&self) {
        self.changed.notified().await
    }

    /// Redis lost what this node reported: everything is reported again.
    pub fn report_all_again(&self) {
        let mut local = self.local();
        let Local { entries, dirty } = &mut *local;
        for (key, entry) in entries.iter_mut() {
            entry.reported = 0;
            dirty.insert(key.clone());
        }
    }

    /// When the next grace period ends.
    pub fn next_leave(&self) -> Option<Instant> {
        let local = self.local();
        local
            .dirty
            .iter()
            .filter_map(|key| local.entries.get(key)?.leave_at)
            .min()
    }

    /// Sends every change that is due; what fails stays dirty for the next
    /// try.
    pub async fn flush(&self, conn: &mut RedisConnection, instance: &str, ttl_ms: u64) -> Reported {
        let now = Instant::now();
        let due: Vec<(Key, i64, i64)> = {
            let mut local = self.local();
            let Local { entries, dirty } = &mut *local;
            let mut due = Vec::new();
            dirty.retain(|key| {
                let Some(entry) = entries.get(key) else {
                    return false;
                };
                let target = match entry.leave_at {
                    Some(at) if entry.count == 0 && at > now => return true,
                    _ => entry.count,
                };
                if target != entry.reported {
                    due.push((key.clone(), target, target - entry.reported));
                } else if entry.count == 0 {
                    entries.remove(key);
                }
                false
            });
            due
        };
        for (at, chunk) in due.chunks(MAX_CHANGES_PER_CALL).enumerate() {
            let changes: Vec<Change<'_>> = chunk
                .iter()
                .map(|((topic, user), target, _)| Change {
                    topic,
                    user,
                    count: *target,
                })
                .collect();
            match self.store.report(conn, instance, ttl_ms, &changes).await {
                Ok(true) => self.reported(chunk),
                Ok(false) => {
                    self.report_all_again();
                    return Reported::Unknown;
                }
                Err(error) => {
                    let unsent = &due[at * MAX_CHANGES_PER_CALL..];
                    let mut local = self.local();
                    local
                        .dirty
                        .extend(unsent.iter().map(|(key, _, _)| key.clone()));
                    return Reported::Failed(error.to_string());
                }
            }
        }
        Reported::Done
    }

    fn reported(&self, chunk: &[(Key, i64, i64)]) {
        let mut local = self.local();
        let Local { entries, dirty } = &mut *local;
        for (key, target, _) in chunk {
            if let Some(entry) = entries.get_mut(key) {
                entry.reported = *target;
                if entry.count == 0 && entry.reported == 0 && !dirty.contains(key) {
                    entries.remove(key);
                }
            }
        }
    }

    fn local(&self) -> MutexGuard<'_, Local> {
        self.local.lock().unwrap_or_else(|e| e.into_inner())
    }
}
