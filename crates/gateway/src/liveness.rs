//! The node's one task that keeps its state in Redis: it renews the node's
//! liveness every heartbeat, reports live sessions and presence as they
//! change, and reaps what dead nodes left. At shutdown it takes the node's
//! own entries out at once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use notify_bus::{NodeStore, RedisPool};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::presence::Presence;
use crate::sessions::Sessions;

/// How a report went.
pub enum Reported {
    Done,
    /// Redis did not know the node (restarted, or took it for dead): the
    /// node registers again and reports everything.
    Unknown,
    Failed(String),
}

pub struct Liveness {
    /// This process: unique per start (see `notify_bus::nodes`).
    pub instance: String,
    pub nodes: NodeStore,
    pub pool: RedisPool,
    pub heartbeat: Duration,
    pub sessions: Arc<Sessions>,
    pub presence: Option<Arc<Presence>>,
    /// Redis calls that failed (retried at the next heartbeat).
    pub failures: AtomicU64,
}

impl Liveness {
    /// Runs until `shutdown` turns true.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut beat = tokio::time::interval(self.heartbeat);
        let mut reap = tokio::time::interval(self.heartbeat / 2);
        reap.reset();
        // After a failed report, the next try waits for the heartbeat: a
        // grace period already over must not turn into a busy loop.
        let mut retry_at: Option<Instant> = None;
        loop {
            let next_leave = self.presence.as_ref().and_then(|p| p.next_leave());
            let wake = match (next_leave, retry_at) {
                (Some(leave), Some(retry)) => leave.max(retry),
                (Some(leave), None) => leave,
                (None, _) => Instant::now() + self.heartbeat,
            };
            tokio::select! {
                _ = self.sessions.changed() => {}
                _ = changed(&self.presence) => {}
                _ = tokio::time::sleep_until(wake) => {}
                _ = beat.tick() => self.beat().await,
                _ = reap.tick() => self.reap().await,
                _ = stopped(&mut shutdown) => break,
            }
            retry_at = (!self.report().await).then(|| Instant::now() + self.heartbeat);
        }
        // Connections are closed by now: report their ends (for last-seen
        // times), then take the node out.
        let _ = self.report().await;
        match self.pool.get().await {
            Ok(mut conn) => {
                if let Err(error) = self.nodes.leave(&mut conn, &self.instance).await {
                    tracing::warn!(%error, "could not remove this node's sessions and presence");
                }
            }
            Err(error) => {
                tracing::warn!(%error, "could not remove this node's sessions and presence")
            }
        }
    }

    /// How long the node counts as alive after each heartbeat or report.
    fn ttl(&self) -> u64 {
        (self.heartbeat.as_millis() as u64) * 3 / 2
    }

    async fn beat(&self) {
        let known = match self.pool.get().await {
            Ok(mut conn) => {
                self.nodes
                    .heartbeat(&mut conn, &self.instance, self.ttl())
                    .await
            }
            Err(error) => return self.failed(&error),
        };
        match known {
            Ok(true) => {}
            Ok(false) => self.report_all_again(),
            Err(error) => self.failed(&error),
        }
    }

    async fn reap(&self) {
        let reaped = match self.pool.get().await {
            Ok(mut conn) => self.nodes.reap(&mut conn).await,
            Err(error) => return self.failed(&error),
        };
        match reaped {
            Ok(0) => {}
            Ok(nodes) => {
                tracing::info!(
                    nodes,
                    "removed the sessions and presence of nodes that stopped"
                )
            }
            Err(error) => self.failed(&error),
        }
    }

    fn report_all_again(&self) {
        self.sessions.report_all_again();
        if let Some(presence) = &self.presence {
            presence.report_all_again();
        }
    }

    /// Reports pending session and presence changes; false when Redis did
    /// not take them. A node Redis does not know registers again and
    /// reports everything.
    async fn report(&self) -> bool {
        let mut conn = match self.pool.get().await {
            Ok(conn) => conn,
            Err(error) => {
                self.failed(&error);
                return false;
            }
        };
        for _ in 0..2 {
            let ttl = self.ttl();
            let mut outcome = self.sessions.flush(&mut conn, &self.instance, ttl).await;
            if let (Reported::Done, Some(presence)) = (&outcome, &self.presence) {
                outcome = presence.flush(&mut conn, &self.instance, ttl).await;
            }
            match outcome {
                Reported::Done => return true,
                Reported::Failed(error) => {
                    self.failed(&error);
                    return false;
                }
                Reported::Unknown => {
                    match self.nodes.heartbeat(&mut conn, &self.instance, ttl).await {
                        Ok(_) => self.report_all_again(),
                        Err(error) => {
                            self.failed(&error);
                            return false;
                        }
                    }
                }
            }
        }
        false
    }

    fn failed(&self, error: &dyn std::fmt::Display) {
        if self
            .failures
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(100)
        {
            tracing::warn!(%error, "could not update sessions or presence in Redis; retrying");
        }
    }
}

async fn changed(presence: &Option<Arc<Presence>>) {
    match presence {
        Some(presence) => presence.changed().await,
        None => std::future::pending().await,
    }
}

/// Resolves once shutdown is requested (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
