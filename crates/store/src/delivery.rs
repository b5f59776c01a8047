//! What happens to notifications after they are stored: the catch-up
//! queries a gateway runs for a connection that may have missed events,
//! delivery acks, the rows the sweep republishes, and the delivery state a
//! sender may read.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncMysqlConnection, RunQueryDsl};

use crate::notification::Notification;
use crate::schema::notifications;
use crate::StoreError;

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

/// A catch-up batch and the user's unread count of the same moment.
pub struct CatchUp {
    /// Ascending ids.
    pub rows: Vec<Notification>,
    /// Older matching notifications were left out.
    pub truncated: bool,
    pub unread_count: u64,
}

impl Notification {
    /// What a connection may have missed (see [`Notification::missed`]):
    /// after the client's last id `after`, including what was created up to
    /// `lag` before it when given (ids can commit out of order across api
    /// nodes; the client drops what it has), or since `since`; with the
    /// unread count. One transaction, so one InnoDB
    /// snapshot (REPEATABLE READ): the count covers exactly what the batch
    /// could see, and what reaches the connection live afterwards committed
    /// later and is not in it.
    pub async fn catch_up(
        conn: &mut AsyncMysqlConnection,
        user: &str,
        after: Option<u64>,
        since: Option<NaiveDateTime>,
        lag: Option<chrono::TimeDelta>,
        limit: i64,
    ) -> Result<CatchUp, StoreError> {
        conn.transaction(async |conn| {
            let since = match (after, lag) {
                (Some(after), Some(lag)) => Self::created_at(conn, user, after)
                    .await?
                    .map(|at| at - lag),
                (Some(_), None) => None,
                (None, _) => since,
            };
            let (rows, truncated) = Self::missed(conn, user, after, since, limit).await?;
            let unread_count = Self::unread_count(conn, user).await?;
            Ok(CatchUp {
                rows,
                truncated,
                unread_count,
            })
        })
        .await
    }

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

    /// What became of notification `id`, if `source` sent it: to anyone
    /// else it does not exist.
    pub async fn delivery_state(
        conn: &mut AsyncMysqlConnection,
        id: u64,
        source: &str,
    ) -> Result<Option<DeliveryState>, StoreError> {
        Ok(notifications::table
            .find(id)
            .filter(notifications::source.eq(source))
            .select(DeliveryState::as_select())
            .first(conn)
            .await
            .optional()?)
    }
}
