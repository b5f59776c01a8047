//! Notifications: inserting them in batches, paging a user's feed, and the
//! read/delete changes a user makes.

use chrono::NaiveDateTime;
use diesel::dsl::{exists, max};
use diesel::prelude::*;
use diesel::sql_types::Bigint;
use diesel_async::{AsyncConnection, AsyncMysqlConnection, RunQueryDsl};
use serde_json::value::RawValue;

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

#[derive(Insertable, Debug, Clone)]
#[diesel(table_name = notifications)]
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

impl NewNotification<'_> {
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

#[diesel::declare_sql_function]
extern "SQL" {
    /// MySQL's id of the first row of the last INSERT on this connection.
    fn last_insert_id() -> Unsigned<Bigint>;
}

/// The id `LAST_INSERT_ID()` reports on this connection. A query-builder
/// query (unlike `sql_query`) is a cached prepared statement: one round trip.
async fn last_insert_id_of(conn: &mut AsyncMysqlConnection) -> Result<u64, StoreError> {
    Ok(diesel::select(last_insert_id()).get_result(conn).await?)
}

impl Notification {
    pub fn into_wire(self) -> notify_protocol::Notification {
        notify_protocol::Notification {
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
    /// order. Must run inside a transaction on one connection.
    ///
    /// MySQL has no RETURNING: `LAST_INSERT_ID()` is the id of the first row,
    /// and a plain multi-row INSERT gets consecutive ids when
    /// `innodb_autoinc_lock_mode` is 0 or 1 and `auto_increment_increment` is
    /// 1, which [`check_server`] verifies at start.
    pub async fn insert_batch(
        conn: &mut AsyncMysqlConnection,
        rows: &[NewNotification<'_>],
    ) -> Result<Vec<u64>, StoreError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let inserted = diesel::insert_into(notifications::table)
            .values(rows)
            .execute(conn)
            .await?;
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

/// What happened to a notification after it was stored, for its sender.
#[derive(Queryable, Selectable, Debug, Clone)]
#[diesel(table_name = notifications, check_for_backend(diesel::mysql::Mysql))]
pub struct DeliveryState {
    pub id: u64,
    pub user_id: String,
    pub created_at: NaiveDateTime,
    pub delivered_at: Option<NaiveDateTime>,
    pub read_at: Option<NaiveDateTime>,
}

impl Notification {
    /// The user's notifications a client may have missed: those with an id
    /// above `after` and those created at or after `since` (either
    /// condition; at least one should be given). At most `limit`, the newest
    /// ones, returned in ascending id order; the flag says older matching
    /// ones were left out.
    pub async fn missed(
        conn: &mut AsyncMysqlConnection,
        user: &str,
        after: Option<u64>,
        since: Option<NaiveDateTime>,
        limit: i64,
    ) -> Result<(Vec<Notification>, bool), StoreError> {
        let mut query = notifications::table
            .filter(notifications::user_id.eq(user))
            .into_boxed();
        query = match (after, since) {
            (Some(after), Some(since)) => query
                .filter(
                    notifications::id
                        .gt(after)
                        .or(notifications::created_at.ge(since)),
                )
                .filter(notifications::id.ne(after)),
            (Some(after), None) => query.filter(notifications::id.gt(after)),
            (None, Some(since)) => query.filter(notifications::created_at.ge(since)),
            (None, None) => return Ok((Vec::new(), false)),
        };
        let mut rows: Vec<Notification> = query
            .order(notifications::id.desc())
            .limit(limit + 1)
            .select(Notification::as_select())
            .load(conn)
            .await?;
        let truncated = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        rows.reverse();
        Ok((rows, truncated))
    }

    /// When the user's notification `id` was created, if it is theirs.
    pub async fn created_at(
        conn: &mut AsyncMysqlConnection,
        user: &str,
        id: u64,
    ) -> Result<Option<NaiveDateTime>, StoreError> {
        Ok(notifications::table
            .filter(notifications::id.eq(id))
            .filter(notifications::user_id.eq(user))
            .select(notifications::created_at)
            .first(conn)
            .await
            .optional()?)
    }

    /// Records first delivery of acknowledged notifications, one UPDATE per
    /// user, all in one transaction. Ids of other users are ignored.
    pub async fn mark_delivered(
        conn: &mut AsyncMysqlConnection,
        acks: &[(String, Vec<u64>)],
        at: NaiveDateTime,
    ) -> Result<u64, StoreError> {
        conn.transaction(async |conn| {
            let mut updated = 0;
            for (user, ids) in acks {
                updated += diesel::update(
                    notifications::table
                        .filter(notifications::user_id.eq(user))
                        .filter(notifications::id.eq_any(ids))
                        .filter(notifications::delivered_at.is_null()),
                )
                .set(notifications::delivered_at.eq(at))
                .execute(conn)
                .await? as u64;
            }
            Ok::<_, StoreError>(updated)
        })
        .await
    }

    /// The notifications with ids `first..=last`, in id order.
    pub async fn range(
        conn: &mut AsyncMysqlConnection,
        first: u64,
        last: u64,
    ) -> Result<Vec<Notification>, StoreError> {
        Ok(notifications::table
            .filter(notifications::id.between(first, last))
            .order(notifications::id.asc())
            .select(Notification::as_select())
            .load(conn)
            .await?)
    }

    pub async fn delivery_state(
        conn: &mut AsyncMysqlConnection,
        id: u64,
    ) -> Result<Option<DeliveryState>, StoreError> {
        Ok(notifications::table
            .find(id)
            .select(DeliveryState::as_select())
            .first(conn)
            .await
            .optional()?)
    }
}

#[derive(QueryableByName)]
struct AutoIncSettings {
    #[diesel(sql_type = Bigint)]
    increment: i64,
    #[diesel(sql_type = Bigint)]
    lock_mode: i64,
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
