//! The pooled Redis connections used for publishing and health checks.
//! Subscribing never uses these: a pooled connection is recycled with PING,
//! which a connection in subscriber mode cannot answer.

use std::time::Duration;

use deadpool_redis::{Config, Pool, Runtime};

pub type RedisPool = Pool;
/// A connection taken from the pool, returned to it when dropped.
pub type RedisConnection = deadpool_redis::Connection;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("invalid Redis configuration: {0}")]
    Config(String),
    #[error("Redis unavailable: {0}")]
    Unavailable(String),
}

pub fn build_pool(url: &str, max_size: usize) -> Result<RedisPool, BusError> {
    Config::from_url(url)
        .builder()
        .map_err(|e| BusError::Config(e.to_string()))?
        .max_size(max_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(2)))
        .create_timeout(Some(Duration::from_secs(2)))
        .recycle_timeout(Some(Duration::from_secs(2)))
        .build()
        .map_err(|e| BusError::Config(e.to_string()))
}

/// True when Redis answers a PING through the pool.
pub async fn ping(pool: &RedisPool) -> Result<(), BusError> {
    let mut conn = pool
        .get()
        .await
        .map_err(|e| BusError::Unavailable(e.to_string()))?;
    redis::cmd("PING")
        .query_async::<String>(&mut conn)
        .await
        .map_err(|e| BusError::Unavailable(e.to_string()))?;
    Ok(())
}

/// A pooled connection; failing to get one means Redis is unavailable.
pub async fn conn(pool: &RedisPool) -> Result<deadpool_redis::Connection, BusError> {
    pool.get().await.map_err(unavailable)
}

pub(crate) fn unavailable(e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(e.to_string())
}
