//! The MySQL connection pool.

use std::time::Duration;

use deadpool::Runtime;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::AsyncMysqlConnection;

use crate::StoreError;

pub type DbPool = Pool<AsyncMysqlConnection>;
pub type DbConn = Object<AsyncMysqlConnection>;

/// Builds a pool that fails fast when MySQL is away: waiting for a connection
/// and opening one are both bounded, so a request gets a 503 in seconds
/// instead of hanging.
pub fn build_pool(url: &str, max_size: usize) -> Result<DbPool, StoreError> {
    let manager = AsyncDieselConnectionManager::<AsyncMysqlConnection>::new(url);
    Pool::builder(manager)
        .max_size(max_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(3)))
        .create_timeout(Some(Duration::from_secs(3)))
        .recycle_timeout(Some(Duration::from_secs(3)))
        .build()
        .map_err(|e| StoreError::Unavailable(e.to_string()))
}

/// Takes a connection from the pool, mapping pool failures to `Unavailable`.
pub async fn get(pool: &DbPool) -> Result<DbConn, StoreError> {
    Ok(pool.get().await?)
}
