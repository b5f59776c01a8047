//! Periodic clean-up of what the api stores only for a while.

use std::time::Duration;

use notify_store::idempotency::REPLAY_WINDOW;
use notify_store::{ConnectionRecord, DbPool, IdempotencyKey, StoreError};

use crate::state::AppState;

/// Keys deleted per statement: each DELETE holds its locks only briefly.
const PURGE_CHUNK: u32 = 1000;
/// Chunks per run at most, so a long backlog is purged over several runs
/// rather than in one long burst of deletes.
const PURGE_CHUNKS_PER_RUN: usize = 100;

/// Deletes idempotency keys older than their replay window; returns how
/// many. Every api node runs this; the deletes do not conflict.
pub async fn purge_idempotency_keys(db: &DbPool) -> Result<usize, StoreError> {
    let mut conn = notify_store::pool::get(db).await?;
    let before = notify_store::now() - REPLAY_WINDOW;
    let mut purged = 0;
    for _ in 0..PURGE_CHUNKS_PER_RUN {
        let deleted = IdempotencyKey::purge(&mut conn, before, PURGE_CHUNK).await?;
        purged += deleted;
        if deleted < PURGE_CHUNK as usize {
            break;
        }
    }
    Ok(purged)
}

/// Rows per statement when closing or deleting connection log rows.
const LOG_CHUNK: i64 = 1000;

/// Removes what gateways that stopped renewing their liveness left in
/// Redis (sessions, presence), and closes their open connection log rows
/// with reason `node_lost`. Every api node runs this; a row is closed once.
pub async fn close_lost_connections(state: &AppState) {
    let result: Result<usize, String> = async {
        let mut redis = state.redis.get().await.map_err(|e| e.to_string())?;
        state
            .nodes
            .reap(&mut redis)
            .await
            .map_err(|e| e.to_string())?;
        let mut conn = notify_store::pool::get(&state.db)
            .await
            .map_err(|e| e.to_string())?;
        let open = ConnectionRecord::open_instances(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        let alive = state
            .nodes
            .alive(&mut redis, &open)
            .await
            .map_err(|e| e.to_string())?;
        let at = notify_store::now();
        let mut closed = 0;
        for (instance, alive) in open.iter().zip(alive) {
            if alive {
                continue;
            }
            loop {
                let n = ConnectionRecord::close_lost(&mut conn, instance, at, LOG_CHUNK)
                    .await
                    .map_err(|e| e.to_string())?;
                closed += n;
                if n < LOG_CHUNK as usize {
                    break;
                }
            }
        }
        Ok(closed)
    }
    .await;
    match result {
        Ok(0) => {}
        Ok(closed) => tracing::info!(
            closed,
            "closed the connection log rows of gateways that died"
        ),
        Err(error) => {
            tracing::warn!(%error, "could not close the connections of gateways that died")
        }
    }
}

/// Deletes connection log rows older than `retention`, in small batches.
pub async fn purge_connection_logs(db: &DbPool, retention: Duration) {
    let result: Result<usize, StoreError> = async {
        let mut conn = notify_store::pool::get(db).await?;
        let cutoff = chrono::TimeDelta::from_std(retention)
            .ok()
            .and_then(|age| notify_store::now().checked_sub_signed(age))
            .unwrap_or(chrono::NaiveDateTime::MIN);
        let mut deleted = 0;
        for _ in 0..PURGE_CHUNKS_PER_RUN {
            let n = ConnectionRecord::delete_before(&mut conn, cutoff, LOG_CHUNK).await?;
            deleted += n;
            if n < LOG_CHUNK as usize {
                break;
            }
        }
        Ok(deleted)
    }
    .await;
    match result {
        Ok(0) => {}
        Ok(deleted) => tracing::info!(deleted, "deleted old connection log rows"),
        Err(error) => tracing::warn!(%error, "could not delete old connection log rows"),
    }
}
