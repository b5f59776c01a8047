//! Idempotency keys: a sender that retries a request with the same
//! `Idempotency-Key` gets the first response back instead of a second copy of
//! every notification.
//!
//! A key is claimed in its own autocommit statement before the work starts,
//! so a concurrent duplicate sees it at once (and is told to retry later)
//! rather than waiting on a row lock. The response is recorded in the same
//! transaction as the notifications, so a stored response always means the
//! rows exist.
//!
//! Keys are kept for [`REPLAY_WINDOW`] and then purged. The notifications a
//! key created keep it (`{key}#{recipient index}`, unique per sender), so a
//! key that comes back after its window is recognised and refused rather
//! than taken for a new request.

use chrono::{NaiveDateTime, TimeDelta};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::{AsyncMysqlConnection, RunQueryDsl};

use crate::schema::idempotency_keys as keys;
use crate::schema::notifications;
use crate::StoreError;

/// How long a key's response is replayed; older keys are purged.
pub const REPLAY_WINDOW: TimeDelta = TimeDelta::hours(24);

/// A claim older than this without a response belongs to a request that
/// died half-way (its transaction rolled back); another request may take it.
const ABANDONED_AFTER: TimeDelta = TimeDelta::seconds(60);

pub struct IdempotencyKey;

#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// This request owns the key and must do the work.
    Fresh,
    /// The same request completed before: answer with this response.
    Replay(String),
    /// The same key is being processed by another request right now.
    InProgress,
    /// The key was used for a different request body.
    Mismatch,
    /// The key was used before its response was purged: it names
    /// notifications that exist, so it cannot name new ones.
    Expired,
}

impl IdempotencyKey {
    pub async fn claim(
        conn: &mut AsyncMysqlConnection,
        source: &str,
        key: &str,
        request_hash: &str,
    ) -> Result<Claim, StoreError> {
        let now = crate::now();
        let inserted = diesel::insert_into(keys::table)
            .values((
                keys::source.eq(source),
                keys::idempotency_key.eq(key),
                keys::request_hash.eq(request_hash),
                keys::created_at.eq(now),
            ))
            .execute(conn)
            .await;
        match inserted {
            Ok(_) if Self::named_notifications(conn, source, key).await? => {
                Self::release(conn, source, key).await?;
                return Ok(Claim::Expired);
            }
            Ok(_) => return Ok(Claim::Fresh),
            Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {}
            Err(e) => return Err(e.into()),
        }
        let existing: Option<(String, Option<String>, NaiveDateTime)> = keys::table
            .find((source, key))
            .select((keys::request_hash, keys::response, keys::created_at))
            .first(conn)
            .await
            .optional()?;
        Ok(match existing {
            // Released between our insert and this read: the other request
            // failed; the sender's retry will find the key free.
            None => Claim::InProgress,
            Some((hash, _, _)) if hash != request_hash => Claim::Mismatch,
            Some((_, Some(response), _)) => Claim::Replay(response),
            Some((_, None, created_at)) if created_at < now - ABANDONED_AFTER => {
                let taken = diesel::update(
                    keys::table
                        .find((source, key))
                        .filter(keys::response.is_null())
                        .filter(keys::created_at.eq(created_at)),
                )
                .set(keys::created_at.eq(now))
                .execute(conn)
                .await?;
                if taken == 1 {
                    Claim::Fresh
                } else {
                    Claim::InProgress
                }
            }
            Some(_) => Claim::InProgress,
        })
    }

    /// Whether notifications stored under `key` exist (their keys are
    /// `{key}#{index}`: a range of the unique index, read with one seek).
    async fn named_notifications(
        conn: &mut AsyncMysqlConnection,
        source: &str,
        key: &str,
    ) -> Result<bool, StoreError> {
        // Keys are visible ASCII, compared byte by byte: every `{key}#...`
        // sorts between `{key}#` and `{key}$`, and nothing else does.
        let (from, to) = (format!("{key}#"), format!("{key}$"));
        Ok(diesel::select(diesel::dsl::exists(
            notifications::table
                .filter(notifications::source.eq(source))
                .filter(notifications::idempotency_key.ge(&from))
                .filter(notifications::idempotency_key.lt(&to)),
        ))
        .get_result(conn)
        .await?)
    }

    /// Deletes up to `limit` keys created before `before`, oldest first,
    /// in one statement; returns how many. Call repeatedly to purge more:
    /// small chunks hold their locks only briefly.
    pub async fn purge(
        conn: &mut AsyncMysqlConnection,
        before: NaiveDateTime,
        limit: u32,
    ) -> Result<usize, StoreError> {
        Ok(diesel::sql_query(
            "DELETE FROM idempotency_keys WHERE created_at < ? ORDER BY created_at LIMIT ?",
        )
        .bind::<diesel::sql_types::Datetime, _>(before)
        .bind::<diesel::sql_types::Unsigned<diesel::sql_types::Integer>, _>(limit)
        .execute(conn)
        .await?)
    }

    /// Records the response; call inside the transaction that did the work.
    pub async fn complete(
        conn: &mut AsyncMysqlConnection,
        source: &str,
        key: &str,
        response: &str,
    ) -> Result<(), StoreError> {
        diesel::update(keys::table.find((source, key)))
            .set(keys::response.eq(response))
            .execute(conn)
            .await?;
        Ok(())
    }

    /// Gives up a claim whose work failed, so the sender can retry at once.
    pub async fn release(
        conn: &mut AsyncMysqlConnection,
        source: &str,
        key: &str,
    ) -> Result<(), StoreError> {
        diesel::delete(
            keys::table
                .find((source, key))
                .filter(keys::response.is_null()),
        )
        .execute(conn)
        .await?;
        Ok(())
    }
}
