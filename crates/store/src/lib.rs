//! The storage layer: MySQL schema, models and every query the services run.
//!
//! MySQL is the source of truth for notifications; Redis only carries news of
//! changes. Queries live next to the model they return, as
//! `impl Model { async fn ...(conn) }`.

pub mod chat;
pub mod connection_log;
pub mod delivery;
pub mod error;
pub mod heartbeat;
pub mod idempotency;
pub mod migrate;
pub mod notification;
pub mod pool;
pub mod schema;
pub mod unpublished;

pub use connection_log::ConnectionRecord;
pub use delivery::DeliveryState;
pub use error::StoreError;
pub use idempotency::{Claim, IdempotencyKey};
pub use notification::{NewNotification, Notification, ReadOutcome, StatementLimit};
pub use pool::{build_pool, DbConn, DbPool};
pub use unpublished::UnpublishedBatch;

#[diesel::declare_sql_function]
extern "SQL" {
    /// MySQL's id of the first row of the last INSERT on this connection.
    fn last_insert_id() -> diesel::sql_types::Unsigned<diesel::sql_types::Bigint>;
}

/// Database time is UTC with microsecond precision (`DATETIME(6)`); values
/// created in the services are truncated to match what reads give back.
pub fn now() -> chrono::NaiveDateTime {
    use chrono::{DurationRound, TimeDelta};
    let now = chrono::Utc::now().naive_utc();
    now.duration_trunc(TimeDelta::microseconds(1))
        .unwrap_or(now)
}
