//! The replica heartbeat: a row written on the primary and read on a read
//! replica, so the api knows how far behind the replica's data is.

use chrono::{NaiveDateTime, TimeDelta};
use diesel::sql_types::Datetime;
use diesel::QueryableByName;
use diesel_async::{AsyncMysqlConnection, RunQueryDsl};

use crate::StoreError;

#[derive(QueryableByName)]
struct Beat {
    #[diesel(sql_type = Datetime)]
    beat_at: NaiveDateTime,
}

/// Records `now` on the primary.
pub async fn beat(conn: &mut AsyncMysqlConnection, now: NaiveDateTime) -> Result<(), StoreError> {
    diesel::sql_query(
        "INSERT INTO replica_heartbeat (id, beat_at) VALUES (1, ?) \
         ON DUPLICATE KEY UPDATE beat_at = VALUES(beat_at)",
    )
    .bind::<Datetime, _>(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// How old the newest beat `conn`'s server holds is at `now`; None when it
/// holds none (never replicated).
pub async fn age(
    conn: &mut AsyncMysqlConnection,
    now: NaiveDateTime,
) -> Result<Option<TimeDelta>, StoreError> {
    let beats: Vec<Beat> = diesel::sql_query("SELECT beat_at FROM replica_heartbeat WHERE id = 1")
        .load(conn)
        .await?;
    Ok(beats.into_iter().next().map(|beat| now - beat.beat_at))
}
