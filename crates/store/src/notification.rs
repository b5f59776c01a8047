//! Notifications: inserting them in batches, paging a user's feed, and the
//! read/delete changes a user makes.

use chrono::NaiveDateTime;
use diesel::dsl::{exists, max};
use diesel::prelude::*;
use diesel::sql_types::Bigint;
use diesel_async::{AsyncConnection, AsyncMysqlConnection, RunQueryDsl};
use serde_json::value::RawValue;

use crate::last_insert_id;
use crate::schema::notifications;
use crate::StoreError;

/// The columns clients see.
#[derive(Queryable, Selectable, Debug, Clone)]
#[diesel(table_name = notifications, check_for_backend(diesel::mysql::Mysql))]
pub struct Notification {
    pub id: u64,
    pub user_id: String,
    pub kind: String,
    pub title: String,
    pub message: String,
    pub link: Option<String>,
    pub metadata: Option<String>,
    pub created_at: NaiveDateTime,
    pub read_at: Option<NaiveDateTime>,
}

/// `treat_none_as_default_value = false`: a missing field is bound as NULL (every optional
/// column's default) instead of written as `DEFAULT`, which would make
/// diesel re-prepare the statement on every insert.
#[derive(Insertable, Debug, Clone)]
#[diesel(table_name = notifications, treat_none_as_default_value = false)]
pub struct NewNotification<'a> {
    pub user_id: &'a str,
    pub kind: &'a str,
    pub title: &'a str,
    pub message: &'a str,
    pub link: Option<&'a str>,
    pub metadata: Option<&'a str>,
    /// Set by the service rather than by MySQL so the published event can be
    /// built without reading the row back.
    pub created_at: NaiveDateTime,
    pub source: Option<&'a str>,
    pub idempotency_key: Option<String>,
}

/// Rows in one INSERT: 2,000 rows of 10 columns keep a statement well under
/// MySQL's 65,535 placeholders.
pub const MAX_STATEMENT_ROWS: usize = 2000;

/// What a row adds to an INSERT's packet besides its text, at most: per
/// column a type (2 bytes), a length prefix (up to 9) and a null bit, and
/// the binary `DATETIME`.
const ROW_OVERHEAD_BYTES: usize = 10 * 12 + 12;

/// The smallest `max_allowed_packet` the service runs with: half of it
/// holds several of the largest rows a request can make (under 70 KiB).
pub const MIN_MAX_ALLOWED_PACKET: u64 = 1024 * 1024;

impl NewNotification<'_> {
    /// An upper bound of the bytes this row adds to an INSERT sent to MySQL.
    pub fn estimated_bytes(&self) -> usize {
        let text = [
            Some(self.user_id),
            Some(self.kind),
            Some(self.title),
            Some(self.message),
            self.link,
            self.metadata,
            self.source,
            self.idempotency_key.as_deref(),
        ];
        ROW_OVERHEAD_BYTES + text.iter().flatten().map(|t| t.len()).sum::<usize>()
    }

    /// The notification as it will read back once stored under `id`.
    pub fn stored(&self, id: u64) -> Notification {
        Notification {
            id,
            user_id: self.user_id.to_owned(),
            kind: self.kind.to_owned(),
            title: self.title.to_owned(),
            message: self.message.to_owned(),
            link: self.link.map(str::to_owned),
            metadata: self.metadata.map(str::to_owned),
            created_at: self.created_at,
            read_at: None,
        }
    }
}

/// What marking one notification read did.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    Marked,
    AlreadyRead,
    NotFound,
}

/// The id `LAST_INSERT_ID()` reports on this connection. A query-builder
/// query (unlike `sql_query`) is a cached prepared statement: one round trip.
pub(crate) async fn last_insert_id_of(conn: &mut AsyncMysqlConnection) -> Result<u64, StoreError> {
    Ok(diesel::select(last_insert_id()).get_result(conn).await?)
}

impl Notification {
    pub fn into_wire(self) -> notify_protocol::WireNotification {
        notify_protocol::WireNotification {
            id: self.id,
            user_id: self.user_id,
            kind: self.kind,
            title: self.title,
            message: self.message,
            link: self.link,
            metadata: self.metadata.and_then(|m| RawValue::from_string(m).ok()),
            created_at: self.created_at.and_utc(),
            read_at: self.read_at.map(|t| t.and_utc()),
        }
    }

    /// Inserts all rows with one multi-row INSERT and returns their ids in
    /// order. Must run inside a transaction on one connection; the rows must
    /// fit one statement (see [`StatementLimit::statements`]).
    ///
    /// MySQL has no RETURNING: `LAST_INSERT_ID()` is the id of the first row,
    /// and a plain multi-row INSERT gets consecutive ids when
    /// `innodb_autoinc_lock_mode` is 0 or 1 and `auto_increment_increment` is
    /// 1, which [`check_server`] verifies at start.
    pub async fn insert_batch(
        conn: &mut AsyncMysqlConnection,
        rows: &[NewNotification<'_>],
    ) -> Result<Vec<u64>, StoreError> {
        Self::insert_batch_on(conn, rows, false).await
    }

    /// [`Self::insert_batch`]; with `returning` (the server answers
    /// `INSERT ... RETURNING`, see [`StatementLimit::returning`]) the ids
    /// come back with the insert: one statement instead of two.
    pub async fn insert_batch_on(
        conn: &mut AsyncMysqlConnection,
        rows: &[NewNotification<'_>],
        returning: bool,
    ) -> Result<Vec<u64>, StoreError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        // One row (every batch at everyday rates) goes as a single-row
        // INSERT: diesel caches its prepared statement, where a batch
        // INSERT is prepared and closed again each time (its shape depends
        // on the row count), two more round trips per transaction.
        if let ([row], true) = (rows, returning) {
            let insert = diesel::insert_into(notifications::table).values(row);
            let ids: Vec<u64> = ReturningIds(insert).load(conn).await?;
            return match ids.as_slice() {
                [id] => Ok(vec![*id]),
                _ => Err(StoreError::Query(
                    diesel::result::Error::RollbackTransaction,
                )),
            };
        }
        let insert = diesel::insert_into(notifications::table).values(rows);
        if returning {
            let ids: Vec<u64> = ReturningIds(insert).load(conn).await?;
            if ids.len() != rows.len() {
                return Err(StoreError::Query(
                    diesel::result::Error::RollbackTransaction,
                ));
            }
            return Ok(ids);
        }
        let inserted = insert.execute(conn).await?;
        let first = last_insert_id_of(conn).await?;
        if inserted != rows.len() {
            return Err(StoreError::Query(
                diesel::result::Error::RollbackTransaction,
            ));
        }
        Ok((first..first + rows.len() as u64).collect())
    }

    /// One page of a user's feed, newest first, strictly older than `before`.
    pub async fn page(
        conn: &mut AsyncMysqlConnection,
        user: &str,
        before: Option<u64>,
        limit: i64,
        unread_only: bool,
    ) -> Result<Vec<Notification>, StoreError> {
        let mut query = notifications::table
            .filter(notifications::user_id.eq(user))
            .into_boxed();
        if let Some(before) = before {
            query = query.filter(notifications::id.lt(before));
        }
        if unread_only {
            query = query.filter(notifications::read_at.is_null());
        }
        Ok(query
            .order(notifications::id.desc())
            .limit(limit)
            .select(Notification::as_select())
            .load(conn)
            .await?)
    }

    pub async fn unread_count(
        conn: &mut AsyncMysqlConnection,
        user: &str,
    ) -> Result<u64, StoreError> {
        let count: i64 = notifications::table
            .filter(notifications::user_id.eq(user))
            .filter(notifications::read_at.is_null())
            .count()
            .get_result(conn)
            .await?;
        Ok(count.max(0) as u64)
    }

    /// Marks the user's notifications among `ids` read and returns the ids
    /// that were unread before. Ids of other users are ignored.
    pub async fn mark_read(
        conn: &mut AsyncMysqlConnection,
        user: &str,
        ids: &[u64],
        at: NaiveDateTime,
    ) -> Result<Vec<u64>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let user = user.to_owned();
        let ids = ids.to_vec();
        conn.transaction(async |conn| {
            let unread: Vec<u64> = notifications::table
                .filter(notifications::user_id.eq(&user))
                .filter(notifications::id.eq_any(&ids))
                .filter(notifications::read_at.is_null())
                .select(notifications::id)
                .order(notifications::id.asc())
                .for_update()
                .load(conn)
                .await?;
            if !unread.is_empty() {
                diesel::update(notifications::table.filter(notifications::id.eq_any(&unread)))
                    .set(notifications::read_at.eq(at))
                    .execute(conn)
                    .await?;
            }
            Ok::<_, StoreError>(unread)
        })
        .await
    }

    /// Marks one notification read, telling apart "already read" from "not
    /// this user's or not there".
    pub async fn mark_one_read(
        conn: &mut AsyncMysqlConnection,
        user: &str,
        id: u64,
        at: NaiveDateTime,
    ) -> Result<ReadOutcome, StoreError> {
        if !Self::mark_read(conn, user, &[id], at).await?.is_empty() {
            return Ok(ReadOutcome::Marked);
        }
        if Self::exists(conn, user, id).await? {
            Ok(ReadOutcome::AlreadyRead)
        } else {
            Ok(ReadOutcome::NotFound)
        }
    }

    /// Marks read every unread notification the user had when this started;
    /// returns how many changed and the highest id covered (None when the
    /// user has no notifications at all).
    pub async fn mark_all_read(
        conn: &mut AsyncMysqlConnection,
        user: &str,
        at: NaiveDateTime,
    ) -> Result<(u64, Option<u64>), StoreError> {
        let up_to: Option<u64> = notifications::table
            .filter(notifications::user_id.eq(user))
            .select(max(notifications::id))
            .get_result(conn)
            .await?;
        let Some(up_to) = up_to else {
            return Ok((0, None));
        };
        let updated = diesel::update(
            notifications::table
                .filter(notifications::user_id.eq(user))
                .filter(notifications::read_at.is_null())
                .filter(notifications::id.le(up_to)),
        )
        .set(notifications::read_at.eq(at))
        .execute(conn)
        .await?;
        Ok((updated as u64, Some(up_to)))
    }

    /// Deletes one of the user's notifications; false when there was none.
    pub async fn delete(
        conn: &mut AsyncMysqlConnection,
        user: &str,
        id: u64,
    ) -> Result<bool, StoreError> {
        let deleted = diesel::delete(
            notifications::table
                .filter(notifications::id.eq(id))
                .filter(notifications::user_id.eq(user)),
        )
        .execute(conn)
        .await?;
        Ok(deleted > 0)
    }

    pub async fn exists(
        conn: &mut AsyncMysqlConnection,
        user: &str,
        id: u64,
    ) -> Result<bool, StoreError> {
        Ok(diesel::select(exists(
            notifications::table
                .filter(notifications::id.eq(id))
                .filter(notifications::user_id.eq(user)),
        ))
        .get_result(conn)
        .await?)
    }
}

/// How much one INSERT of notifications may carry: rows are bounded by
/// MySQL's placeholders, bytes by the server's `max_allowed_packet`, past
/// which MySQL refuses the statement and drops the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatementLimit {
    pub max_rows: usize,
    pub max_bytes: usize,
    /// The server answers `INSERT ... RETURNING` (MariaDB 10.5 and later):
    /// the ids come with the insert instead of from a second statement.
    pub returning: bool,
}

#[derive(QueryableByName)]
struct ServerVersion {
    #[diesel(sql_type = diesel::sql_types::Text)]
    version: String,
}

/// Whether a server reporting this `VERSION()` answers
/// `INSERT ... RETURNING`: MariaDB from 10.5 on (MySQL has no RETURNING).
pub fn answers_returning(version: &str) -> bool {
    if !version.contains("MariaDB") {
        return false;
    }
    let mut parts = version.split(['.', '-']).map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= (10, 5),
        _ => false,
    }
}

#[derive(QueryableByName)]
struct MaxAllowedPacket {
    #[diesel(sql_type = Bigint)]
    bytes: i64,
}

impl StatementLimit {
    /// The limit for the server `conn` is connected to. Read at start: a
    /// change of `max_allowed_packet` takes effect when the service
    /// restarts.
    pub async fn of_server(conn: &mut AsyncMysqlConnection) -> Result<Self, StoreError> {
        let packet: MaxAllowedPacket =
            diesel::sql_query("SELECT CAST(@@max_allowed_packet AS SIGNED) AS bytes")
                .get_result(conn)
                .await?;
        let server: ServerVersion = diesel::sql_query("SELECT VERSION() AS version")
            .get_result(conn)
            .await?;
        Ok(Self {
            returning: answers_returning(&server.version),
            ..Self::for_packet(u64::try_from(packet.bytes).unwrap_or(0))?
        })
    }

    /// Statements of at most half of `max_allowed_packet`: the estimate of
    /// a row is an upper bound already, the margin covers what it does not
    /// count.
    pub fn for_packet(max_allowed_packet: u64) -> Result<Self, StoreError> {
        if max_allowed_packet < MIN_MAX_ALLOWED_PACKET {
            return Err(StoreError::Migration(format!(
                "MySQL's max_allowed_packet is {max_allowed_packet} bytes; \
                 it must be at least {MIN_MAX_ALLOWED_PACKET}"
            )));
        }
        Ok(Self {
            max_rows: MAX_STATEMENT_ROWS,
            max_bytes: usize::try_from(max_allowed_packet / 2).unwrap_or(usize::MAX),
            returning: false,
        })
    }

    /// Whether `rows` rows of `bytes` estimated bytes fit one statement.
    pub fn fits(&self, rows: usize, bytes: usize) -> bool {
        rows <= self.max_rows && bytes <= self.max_bytes
    }

    /// Splits `rows`, in order, into statements within this limit. A row
    /// larger than the limit on its own still gets a statement (alone).
    pub fn statements<'a, 'r>(
        &self,
        rows: &'a [NewNotification<'r>],
    ) -> Vec<&'a [NewNotification<'r>]> {
        let mut statements = Vec::new();
        let (mut start, mut bytes) = (0, 0);
        for (i, row) in rows.iter().enumerate() {
            let row_bytes = row.estimated_bytes();
            if i > start && !self.fits(i + 1 - start, bytes + row_bytes) {
                statements.push(&rows[start..i]);
                (start, bytes) = (i, 0);
            }
            bytes += row_bytes;
        }
        if start < rows.len() {
            statements.push(&rows[start..]);
        }
        statements
    }
}

#[derive(QueryableByName)]
struct AutoIncSettings {
    #[diesel(sql_type = Bigint)]
    increment: i64,
    #[diesel(sql_type = Bigint)]
    lock_mode: i64,
}

/// An INSERT followed by `RETURNING id` (MariaDB), loaded as the ids in
/// row order.
#[derive(diesel::query_builder::QueryId)]
struct ReturningIds<Q>(Q);

impl<Q> diesel::query_builder::QueryFragment<diesel::mysql::Mysql> for ReturningIds<Q>
where
    Q: diesel::query_builder::QueryFragment<diesel::mysql::Mysql>,
{
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::mysql::Mysql>,
    ) -> QueryResult<()> {
        self.0.walk_ast(out.reborrow())?;
        out.push_sql(" RETURNING id");
        Ok(())
    }
}

impl<Q> diesel::query_builder::Query for ReturningIds<Q> {
    type SqlType = diesel::sql_types::Unsigned<Bigint>;
}

/// Refuses to run against a server whose auto-increment settings would make
/// the ids of a multi-row INSERT non-consecutive.
pub async fn check_server(conn: &mut AsyncMysqlConnection) -> Result<(), StoreError> {
    let s: AutoIncSettings = diesel::sql_query(
        "SELECT CAST(@@auto_increment_increment AS SIGNED) AS increment, \
         CAST(@@innodb_autoinc_lock_mode AS SIGNED) AS lock_mode",
    )
    .get_result(conn)
    .await?;
    if s.increment != 1 || s.lock_mode > 1 {
        return Err(StoreError::Migration(format!(
            "MySQL must run with auto_increment_increment=1 and innodb_autoinc_lock_mode=0 or 1 \
             (found {} and {}): multi-row inserts rely on consecutive ids",
            s.increment, s.lock_mode
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row<'a>(user_id: &'a str, message: &'a str) -> NewNotification<'a> {
        NewNotification {
            user_id,
            kind: "generic",
            title: "",
            message,
            link: None,
            metadata: None,
            created_at: NaiveDateTime::default(),
            source: Some("0123456789ab"),
            idempotency_key: None,
        }
    }

    #[test]
    fn returning_is_used_where_the_server_answers_it() {
        assert!(answers_returning("10.11.6-MariaDB-0+deb12u1"));
        assert!(answers_returning("10.5.0-MariaDB"));
        assert!(!answers_returning("10.4.32-MariaDB"));
        assert!(!answers_returning("8.0.36"));
        assert!(!answers_returning("MariaDB"));
    }

    #[test]
    fn statements_keep_order_and_stay_within_rows_and_bytes() {
        let message = "x".repeat(10_000);
        let limit = StatementLimit {
            returning: false,
            max_rows: 3,
            max_bytes: 25_000,
        };
        let users: Vec<String> = (0..10).map(|i| format!("u{i}")).collect();
        let rows: Vec<_> = users.iter().map(|u| row(u, &message)).collect();
        let statements = limit.statements(&rows);
        // Two rows of 10 KB fit 25 KB, three do not.
        assert_eq!(
            statements.iter().map(|s| s.len()).collect::<Vec<_>>(),
            [2, 2, 2, 2, 2]
        );
        let flattened: Vec<&str> = statements
            .iter()
            .flat_map(|s| s.iter().map(|r| r.user_id))
            .collect();
        assert_eq!(
            flattened,
            users.iter().map(String::as_str).collect::<Vec<_>>()
        );

        let short: Vec<_> = users.iter().map(|u| row(u, "m")).collect();
        let by_rows = limit.statements(&short);
        assert_eq!(
            by_rows.iter().map(|s| s.len()).collect::<Vec<_>>(),
            [3, 3, 3, 1]
        );
    }

    #[test]
    fn a_row_over_the_limit_gets_a_statement_of_its_own() {
        let large = "x".repeat(50_000);
        let limit = StatementLimit {
            max_rows: 2000,
            max_bytes: 20_000,
            returning: false,
        };
        let rows = [row("a", "m"), row("b", &large), row("c", "m")];
        let statements = limit.statements(&rows);
        assert_eq!(
            statements.iter().map(|s| s.len()).collect::<Vec<_>>(),
            [1, 1, 1]
        );
        assert!(limit.statements(&[]).is_empty());
    }

    #[test]
    fn the_limit_is_half_the_packet_and_small_packets_are_refused() {
        let limit = StatementLimit::for_packet(16 * 1024 * 1024).unwrap();
        assert_eq!(limit.max_bytes, 8 * 1024 * 1024);
        assert_eq!(limit.max_rows, MAX_STATEMENT_ROWS);
        assert!(StatementLimit::for_packet(64 * 1024).is_err());
    }
}
#[cfg(test)]
mod sql_shape {
    use super::*;

    /// A row with missing optional fields still binds them (as NULL), so
    /// the statement's text, and its cached prepared statement, never
    /// change with the row.
    #[test]
    fn a_single_row_insert_has_one_shape() {
        let row = NewNotification {
            user_id: "u",
            kind: "generic",
            title: "",
            message: "m",
            link: None,
            metadata: None,
            created_at: NaiveDateTime::default(),
            source: None,
            idempotency_key: None,
        };
        let insert = diesel::insert_into(notifications::table).values(&row);
        let sql = diesel::debug_query::<diesel::mysql::Mysql, _>(&insert).to_string();
        assert!(!sql.contains("DEFAULT"), "{sql}");
    }
}
