//! Schema migrations, embedded in every binary that needs them.
//!
//! Several api nodes may start at once and MySQL DDL is not transactional, so
//! migrations run under a MySQL named lock: the first node applies them, the
//! others wait and then find nothing pending.

use diesel::sql_types::{Integer, Nullable};
use diesel::{Connection, QueryableByName, RunQueryDsl};
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::AsyncMysqlConnection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::StoreError;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

const LOCK_TIMEOUT_SECS: i32 = 60;

#[derive(QueryableByName)]
struct Lock {
    #[diesel(sql_type = Nullable<Integer>)]
    acquired: Option<i32>,
}

type SyncConn = AsyncConnectionWrapper<AsyncMysqlConnection>;

/// Applies pending migrations and returns how many ran.
///
/// Runs on a blocking thread: diesel's migration harness is synchronous, and
/// the wrapper that adapts our async connection must not block a runtime
/// worker.
pub async fn run_pending(url: &str) -> Result<usize, StoreError> {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || run_pending_blocking(&url))
        .await
        .map_err(|e| StoreError::Migration(e.to_string()))?
}

fn run_pending_blocking(url: &str) -> Result<usize, StoreError> {
    let mut conn = <SyncConn as Connection>::establish(url)
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    let lock: Lock = diesel::sql_query(format!(
        "SELECT GET_LOCK('notify_migrations', {LOCK_TIMEOUT_SECS}) AS acquired"
    ))
    .get_result(&mut conn)?;
    if lock.acquired != Some(1) {
        return Err(StoreError::Migration(
            "another process held the migration lock for too long".into(),
        ));
    }
    let applied = conn
        .run_pending_migrations(MIGRATIONS)
        .map(|versions| versions.len())
        .map_err(|e| StoreError::Migration(e.to_string()));
    // The lock also goes away with the connection; releasing it explicitly
    // lets waiting nodes proceed at once.
    let _ = diesel::sql_query("DO RELEASE_LOCK('notify_migrations')").execute(&mut conn);
    applied
}

/// Runs one statement outside any pool; used to create and drop databases
/// for tests and tooling.
pub async fn execute_admin(url: &str, sql: String) -> Result<(), StoreError> {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut conn = <SyncConn as Connection>::establish(&url)
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        diesel::sql_query(sql).execute(&mut conn)?;
        Ok(())
    })
    .await
    .map_err(|e| StoreError::Migration(e.to_string()))?
}
