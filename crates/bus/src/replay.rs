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

#[cfg(test)]
mod tests {
    use notify_auth::webhook::{REPLAY_TTL_SECS, TOLERANCE_SECS};

    use super::*;

    #[tokio::test]
    async fn a_claimed_id_is_kept_beyond_the_window_its_timestamp_is_accepted_in() {
        let pool =
            crate::build_pool(&crate::RedisTarget::Single(notify_testkit::redis_url())).unwrap();
        let key = notify_testkit::unique("replay");
        assert!(claim_once(&pool, &key, REPLAY_TTL_SECS).await.unwrap());
        assert!(!claim_once(&pool, &key, REPLAY_TTL_SECS).await.unwrap());
        let mut conn = crate::pool::conn(&pool).await.unwrap();
        let kept_ms: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        // A timestamp is accepted from TOLERANCE_SECS before it to the end
        // of the second TOLERANCE_SECS after it: an id first used at the
        // start of that window must still be known at its end.
        let window_ms = ((2 * TOLERANCE_SECS + 1) * 1000) as i64;
        assert!(kept_ms > window_ms, "{kept_ms} <= {window_ms}");
        release(&pool, &key).await.unwrap();
        assert!(claim_once(&pool, &key, REPLAY_TTL_SECS).await.unwrap());
        release(&pool, &key).await.unwrap();
    }
}
