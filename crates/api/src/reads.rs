//! Where feed reads go: a read replica (`DATABASE_READ_URL`) while its data
//! is at most `DATABASE_READ_MAX_LAG_MS` behind the primary, the primary
//! otherwise.
//!
//! - How far behind: the api rewrites one heartbeat row on the primary every
//!   quarter of the bound (the primary's time) and reads it back on the
//!   replica (against the replica's time); its age is the replica's lag, as
//!   pt-heartbeat measures it (keep the database servers' clocks in sync). A replica that cannot be
//!   reached, has no heartbeat or lags more is not used until it catches up.
//! - Reading one's own writes: a user who marked read or deleted through the
//!   api is served by the primary for twice the bound after it (a key in
//!   Redis, so every api node knows, set before the write and again after
//!   it), so a page read right after `read-all` shows it. If Redis cannot be
//!   asked, the primary serves. Marks made over a socket and new
//!   notifications do not set it: a page read within the bound after them
//!   may lack them (the socket has delivered them already).
//! - Only the feed page and unread counts go to the replica. Catch-ups on
//!   the gateways stay on the primary: a client resuming after an id must
//!   get every row committed so far, or it would take a gap for the end.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use notify_store::pool::{self, DbConn, DbPool};
use tokio::task::JoinHandle;

use crate::error::ApiError;
use crate::state::AppState;

/// How long asking Redis about a user's recent writes may take.
const MARKER_TIMEOUT: Duration = Duration::from_millis(500);

pub struct FeedReads {
    replica: Option<Arc<Replica>>,
}

struct Replica {
    pool: DbPool,
    max_lag: Duration,
    /// Whether the last check found the replica within the bound.
    fresh: AtomicBool,
}

impl FeedReads {
    /// Every read on the primary.
    pub fn primary_only() -> Self {
        Self { replica: None }
    }

    /// Reads on `replica` within `max_lag`; the returned task keeps the
    /// heartbeat and the replica's freshness up to date.
    pub fn with_replica(
        primary: DbPool,
        replica: DbPool,
        max_lag: Duration,
    ) -> (Self, JoinHandle<()>) {
        let replica = Arc::new(Replica {
            pool: replica,
            max_lag,
            fresh: AtomicBool::new(false),
        });
        let task = tokio::spawn(replica.clone().watch(primary));
        (
            Self {
                replica: Some(replica),
            },
            task,
        )
    }

    /// A connection for reading `user`'s feed.
    pub async fn conn(&self, state: &AppState, user: &str) -> Result<DbConn, ApiError> {
        if let Some(replica) = &self.replica {
            if replica.fresh.load(Ordering::Relaxed) && !wrote_recently(state, user).await {
                if let Ok(conn) = pool::get(&replica.pool).await {
                    return Ok(conn);
                }
            }
        }
        Ok(pool::get(&state.db).await?)
    }

    /// Records that `user` changed their feed on the primary just now.
    pub async fn wrote(&self, state: &AppState, user: &str) {
        let Some(replica) = &self.replica else {
            return;
        };
        let ttl_ms = u64::try_from(replica.max_lag.as_millis() * 2).unwrap_or(u64::MAX);
        let result = async {
            let mut conn = state.redis.get().await.map_err(|e| e.to_string())?;
            redis::cmd("SET")
                .arg(state.channels.feed_written(user))
                .arg(1)
                .arg("PX")
                .arg(ttl_ms.max(1))
                .query_async::<()>(&mut conn)
                .await
                .map_err(|e| e.to_string())
        };
        if let Err(error) = tokio::time::timeout(MARKER_TIMEOUT, result)
            .await
            .unwrap_or_else(|_| Err("timed out".into()))
        {
            // The user's next reads may come from the replica, at most the
            // bound behind.
            tracing::warn!(%error, "could not record a feed write for read-your-writes");
        }
    }
}

/// Whether `user` changed their feed within the replica's bound; true when
/// Redis cannot tell.
async fn wrote_recently(state: &AppState, user: &str) -> bool {
    let asked = async {
        let mut conn = state.redis.get().await.map_err(|e| e.to_string())?;
        redis::cmd("EXISTS")
            .arg(state.channels.feed_written(user))
            .query_async::<bool>(&mut conn)
            .await
            .map_err(|e| e.to_string())
    };
    tokio::time::timeout(MARKER_TIMEOUT, asked)
        .await
        .unwrap_or_else(|_| Err("timed out".into()))
        .unwrap_or(true)
}

impl Replica {
    /// Beats on the primary and measures the replica, forever.
    async fn watch(self: Arc<Self>, primary: DbPool) {
        let every = (self.max_lag / 4).max(Duration::from_millis(50));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let fresh = self.check(&primary).await;
            let was = self.fresh.swap(fresh, Ordering::Relaxed);
            if was != fresh {
                if fresh {
                    tracing::info!("feed reads go to the read replica");
                } else {
                    tracing::warn!(
                        max_lag_ms = self.max_lag.as_millis() as u64,
                        "the read replica lags or is away: feed reads go to the primary"
                    );
                }
            }
        }
    }

    async fn check(&self, primary: &DbPool) -> bool {
        let beat = async {
            let mut conn = pool::get(primary).await?;
            notify_store::heartbeat::beat(&mut conn).await
        };
        if let Err(error) = beat.await {
            tracing::debug!(%error, "could not write the replica heartbeat");
        }
        let measured = async {
            let mut conn = pool::get(&self.pool).await?;
            notify_store::heartbeat::age(&mut conn).await
        };
        let max_lag = chrono::TimeDelta::from_std(self.max_lag).unwrap_or(chrono::TimeDelta::MAX);
        matches!(measured.await, Ok(Some(age)) if age <= max_lag)
    }
}
