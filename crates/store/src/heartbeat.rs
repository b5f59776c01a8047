//! The replica heartbeat: a row written on the primary and read on a read
//! replica, so the api knows how far behind the replica's data is. Both
//! times come from the database servers' clocks (the primary's when
//! written, the replica's when read), never from the api nodes', which may
//! differ from each other.

use chrono::TimeDelta;
use diesel::sql_types::BigInt;
use diesel::QueryableByName;
use diesel_async::{AsyncMysqlConnection, RunQueryDsl};

use crate::StoreError;

#[derive(QueryableByName)]
struct Age {
    #[diesel(sql_type = BigInt)]
    micros: i64,
}

/// Records the primary's time.
pub async fn beat(conn: &mut AsyncMysqlConnection) -> Result<(), StoreError> {
    diesel::sql_query(
        "INSERT INTO replica_heartbeat (id, beat_at) VALUES (1, UTC_TIMESTAMP(6)) \
         ON DUPLICATE KEY UPDATE beat_at = VALUES(beat_at)",
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// How old the newest beat `conn`'s server holds is by that server's
/// clock; None when it holds none (never replicated).
pub async fn age(conn: &mut AsyncMysqlConnection) -> Result<Option<TimeDelta>, StoreError> {
    let ages: Vec<Age> = diesel::sql_query(
        "SELECT CAST(TIMESTAMPDIFF(MICROSECOND, beat_at, UTC_TIMESTAMP(6)) AS SIGNED) AS micros \
         FROM replica_heartbeat WHERE id = 1",
    )
    .load(conn)
    .await?;
    Ok(ages
        .into_iter()
        .next()
        .map(|age| TimeDelta::microseconds(age.micros)))
}
