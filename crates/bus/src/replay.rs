//! Ids that may be used once: a signed webhook's `webhook-id` is claimed here
//! when the request is accepted, and a second request with the same id
//! within the claim's lifetime is a replay.

use crate::pool::unavailable;
use crate::{BusError, RedisPool};

/// Records `key` for `ttl_secs` unless it is already there; false when it
/// was (a replay).
pub async fn claim_once(pool: &RedisPool, key: &str, ttl_secs: u64) -> Result<bool, BusError> {
    let mut conn = crate::pool::conn(pool).await?;
    let set: Option<String> = redis::cmd("SET")
        .arg(key)
        .arg(1)
        .arg("NX")
        .arg("EX")
        .arg(ttl_secs.max(1))
        .query_async(&mut conn)
        .await
        .map_err(unavailable)?;
    Ok(set.is_some())
}

/// Forgets a claim, so that a request that failed can be retried.
pub async fn release(pool: &RedisPool, key: &str) -> Result<(), BusError> {
    let mut conn = crate::pool::conn(pool).await?;
    redis::cmd("DEL")
        .arg(key)
        .query_async::<()>(&mut conn)
        .await
        .map_err(unavailable)
}
