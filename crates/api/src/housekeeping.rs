//! Periodic clean-up of what the api stores only for a while.

use notify_store::idempotency::REPLAY_WINDOW;
use notify_store::{DbPool, IdempotencyKey, StoreError};

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
