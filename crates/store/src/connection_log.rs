//! The connection log: one row per connection a gateway held (written when
//! it is established, completed when it ends) or per attempt it refused.
//! Gateways write rows in batches; the api closes the rows of gateways that
//! died and deletes old rows.

use chrono::NaiveDateTime;
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{Nullable, Unsigned};
use diesel_async::{AsyncConnection, AsyncMysqlConnection, RunQueryDsl};

use crate::StoreError;

/// One row as a gateway writes it: the connect (no `disconnected_at`), the
/// complete connection, or a refused attempt.
#[derive(Insertable, Debug, Clone, PartialEq, Eq)]
#[diesel(table_name = crate::schema::connection_logs)]
pub struct ConnectionRecord {
    pub session_id: String,
    pub user_id: Option<String>,
    pub node: String,
    pub instance: String,
    pub client_address: Option<String>,
    pub user_agent: Option<String>,
    pub connected_at: NaiveDateTime,
    pub disconnected_at: Option<NaiveDateTime>,
    pub close_code: Option<u16>,
    pub close_reason: Option<String>,
    pub refused: Option<String>,
    pub frames_in: u32,
    pub frames_out: u32,
    pub bytes_out: u64,
}

/// Most rows in one INSERT: 14 columns each, well under MySQL's 65,535
/// placeholders, and a power of two (see [`ConnectionRecord::write_all`]).
pub const MAX_ROWS_PER_STATEMENT: usize = 512;

/// Longest user agent kept.
pub const MAX_USER_AGENT_CHARS: usize = 512;
/// Longest close reason kept.
pub const MAX_REASON_CHARS: usize = 128;

/// `text` cut to at most `max` characters.
pub fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => text[..at].to_owned(),
        None => text.to_owned(),
    }
}

impl ConnectionRecord {
    /// Writes `records` in one transaction. A record for a session already
    /// written completes it (its end, counters and refusal), so a connect
    /// and its disconnect may arrive in the same batch or in two, and a
    /// disconnect whose connect was lost still leaves a whole row.
    ///
    /// Each row count is its own prepared statement on the server, so the
    /// rows go in chunks of powers of two: a handful of statements, each
    /// prepared once, whatever the batch sizes.
    pub async fn write_all(
        conn: &mut AsyncMysqlConnection,
        records: &[ConnectionRecord],
    ) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        conn.transaction(async |conn| {
            let mut rest = records;
            while !rest.is_empty() {
                let size = 1usize << rest.len().min(MAX_ROWS_PER_STATEMENT).ilog2();
                let (chunk, after) = rest.split_at(size);
                Self::upsert(conn, chunk).await?;
                rest = after;
            }
            Ok::<_, StoreError>(())
        })
        .await
    }

    async fn upsert(
        conn: &mut AsyncMysqlConnection,
        records: &[ConnectionRecord],
    ) -> Result<(), StoreError> {
        use crate::schema::connection_logs::dsl::*;
        diesel::insert_into(connection_logs)
            .values(records)
            .on_conflict(diesel::dsl::DuplicatedKeys)
            .do_update()
            .set((
                disconnected_at.eq(sql::<Nullable<diesel::sql_types::Datetime>>(
                    "VALUES(disconnected_at)",
                )),
                close_code.eq(sql::<Nullable<Unsigned<diesel::sql_types::SmallInt>>>(
                    "VALUES(close_code)",
                )),
                close_reason.eq(sql::<Nullable<diesel::sql_types::Varchar>>(
                    "VALUES(close_reason)",
                )),
                refused.eq(sql::<Nullable<diesel::sql_types::Varchar>>(
                    "VALUES(refused)",
                )),
                frames_in.eq(sql::<Unsigned<diesel::sql_types::Integer>>(
                    "VALUES(frames_in)",
                )),
                frames_out.eq(sql::<Unsigned<diesel::sql_types::Integer>>(
                    "VALUES(frames_out)",
                )),
                bytes_out.eq(sql::<Unsigned<diesel::sql_types::BigInt>>(
                    "VALUES(bytes_out)",
                )),
            ))
            .execute(conn)
            .await?;
        Ok(())
    }

    /// Gateway processes that still have open rows.
    pub async fn open_instances(
        conn: &mut AsyncMysqlConnection,
    ) -> Result<Vec<String>, StoreError> {
        use crate::schema::connection_logs::dsl::*;
        Ok(connection_logs
            .filter(disconnected_at.is_null())
            .select(instance)
            .distinct()
            .load(conn)
            .await?)
    }

    /// Closes at most `limit` open rows of a gateway process that died, at
    /// `at`, with reason `node_lost`; returns how many.
    pub async fn close_lost(
        conn: &mut AsyncMysqlConnection,
        lost: &str,
        at: NaiveDateTime,
        limit: i64,
    ) -> Result<usize, StoreError> {
        use crate::schema::connection_logs::dsl::*;
        let ids: Vec<u64> = connection_logs
            .filter(instance.eq(lost))
            .filter(disconnected_at.is_null())
            .select(id)
            .limit(limit)
            .load(conn)
            .await?;
        if ids.is_empty() {
            return Ok(0);
        }
        Ok(diesel::update(connection_logs.filter(id.eq_any(&ids)))
            .filter(disconnected_at.is_null())
            .set((disconnected_at.eq(at), close_reason.eq("node_lost")))
            .execute(conn)
            .await?)
    }

    /// Deletes at most `limit` rows of connections made before `cutoff`;
    /// returns how many.
    pub async fn delete_before(
        conn: &mut AsyncMysqlConnection,
        cutoff: NaiveDateTime,
        limit: i64,
    ) -> Result<usize, StoreError> {
        use crate::schema::connection_logs::dsl::*;
        let ids: Vec<u64> = connection_logs
            .filter(connected_at.lt(cutoff))
            .select(id)
            .order(id.asc())
            .limit(limit)
            .load(conn)
            .await?;
        if ids.is_empty() {
            return Ok(0);
        }
        Ok(diesel::delete(connection_logs.filter(id.eq_any(&ids)))
            .execute(conn)
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::clip;

    #[test]
    fn clips_by_characters() {
        assert_eq!(clip("héllo", 2), "hé");
        assert_eq!(clip("hi", 5), "hi");
    }
}
