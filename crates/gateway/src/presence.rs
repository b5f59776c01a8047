//! This node's share of presence: how many local connections each user
//! has in each presence topic, reported to Redis (`notify_bus::presence`)
//! in batches by one task, which also keeps the node alive there and reaps
//! the entries of nodes that died.
//!
//! A user's last local connection leaving is reported only after a grace
//! period: a reconnect (here or on another node) within it changes no total
//! to zero, so subscribers see no `left`/`joined` flap.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use notify_bus::presence::{now_ms, Change, MAX_CHANGES_PER_CALL};
use notify_bus::{PresenceStore, RedisPool};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

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
    node: String,
    store: PresenceStore,
    pool: RedisPool,
    heartbeat: Duration,
    grace: Duration,
    local: Mutex<Local>,
    changed: Notify,
    /// Reports and heartbeats that failed (Redis away); retried.
    pub failures: AtomicU64,
}

impl Presence {
    pub fn new(
        node: String,
        store: PresenceStore,
        pool: RedisPool,
        heartbeat: Duration,
        grace: Duration,
    ) -> Self {
        Self {
            node,
            store,
            pool,
            heartbeat,
            grace,
            local: Mutex::default(),
            changed: Notify::new(),
            failures: AtomicU64::new(0),
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

    /// Reports changes as they come until `shutdown`, then takes the
    /// node's entries out of Redis.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut beat = tokio::time::interval(self.heartbeat);
        let mut reap = tokio::time::interval(self.heartbeat / 2);
        loop {
            let wake = self
                .next_leave()
                .unwrap_or_else(|| Instant::now() + self.heartbeat);
            tokio::select! {
                _ = self.changed.notified() => {}
                _ = tokio::time::sleep_until(wake) => {}
                _ = beat.tick() => self.beat().await,
                _ = reap.tick() => self.reap().await,
                _ = stopped(&mut shutdown) => break,
            }
            self.flush().await;
        }
        match self.pool.get().await {
            Ok(mut conn) => {
                if let Err(error) = self.store.leave(&mut conn, &self.node).await {
                    tracing::warn!(%error, "could not remove this node's presence");
                }
            }
            Err(error) => tracing::warn!(%error, "could not remove this node's presence"),
        }
    }

    fn expiry(&self) -> u64 {
        now_ms() + (self.heartbeat.as_millis() as u64) * 3 / 2
    }

    /// Keeps the node alive; if Redis had lost it (restart, or taken for
    /// dead), everything is reported again.
    async fn beat(&self) {
        let known = match self.pool.get().await {
            Ok(mut conn) => {
                self.store
                    .heartbeat(&mut conn, &self.node, self.expiry())
                    .await
            }
            Err(error) => {
                self.failed(&error);
                return;
            }
        };
        match known {
            Ok(true) => {}
            Ok(false) => self.report_all_again(),
            Err(error) => self.failed(&error),
        }
    }

    async fn reap(&self) {
        let reaped = match self.pool.get().await {
            Ok(mut conn) => self.store.reap(&mut conn, now_ms()).await,
            Err(error) => return self.failed(&error),
        };
        match reaped {
            Ok(0) => {}
            Ok(nodes) => tracing::info!(nodes, "removed the presence of nodes that stopped"),
            Err(error) => self.failed(&error),
        }
    }

    fn report_all_again(&self) {
        let mut local = self.local();
        let Local { entries, dirty } = &mut *local;
        for (key, entry) in entries.iter_mut() {
            entry.reported = 0;
            dirty.insert(key.clone());
        }
    }

    fn next_leave(&self) -> Option<Instant> {
        let local = self.local();
        local
            .dirty
            .iter()
            .filter_map(|key| local.entries.get(key)?.leave_at)
            .min()
    }

    /// Sends every change that is due; what fails stays dirty for the next
    /// heartbeat.
    async fn flush(&self) {
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
        if due.is_empty() {
            return;
        }
        let mut conn = match self.pool.get().await {
            Ok(conn) => conn,
            Err(error) => return self.retry_later(due, &error),
        };
        for chunk in due.chunks(MAX_CHANGES_PER_CALL) {
            let changes: Vec<Change<'_>> = chunk
                .iter()
                .map(|((topic, user), _, delta)| Change {
                    topic,
                    user,
                    delta: *delta,
                })
                .collect();
            match self
                .store
                .report(&mut conn, &self.node, self.expiry(), &changes)
                .await
            {
                Ok(true) => self.reported(chunk),
                Ok(false) => {
                    // Taken for dead: register again and report in full.
                    match self
                        .store
                        .heartbeat(&mut conn, &self.node, self.expiry())
                        .await
                    {
                        Ok(_) => {}
                        Err(error) => self.failed(&error),
                    }
                    self.report_all_again();
                    self.changed.notify_one();
                    return;
                }
                Err(error) => return self.retry_later(chunk.to_vec(), &error),
            }
        }
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

    fn retry_later(&self, failed: Vec<(Key, i64, i64)>, error: &dyn std::fmt::Display) {
        self.failed(error);
        let mut local = self.local();
        local
            .dirty
            .extend(failed.into_iter().map(|(key, _, _)| key));
    }

    fn failed(&self, error: &dyn std::fmt::Display) {
        if self
            .failures
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(100)
        {
            tracing::warn!(%error, "could not update presence in Redis; retrying");
        }
    }

    fn local(&self) -> MutexGuard<'_, Local> {
        self.local.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Resolves once shutdown is requested (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
