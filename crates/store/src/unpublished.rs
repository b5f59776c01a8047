//! The outbox of new notifications whose events may not have reached Redis.
//!
//! Each committed batch of new notifications gets one row here, written in
//! the same transaction, and the row is deleted once every event of the
//! batch was published (the rows of half a second's batches in one
//! statement). Rows that stay are found by the sweep.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::{AsyncMysqlConnection, RunQueryDsl};

use crate::schema::unpublished_batches as batches;
use crate::StoreError;

#[derive(Queryable, Selectable, Debug, Clone)]
#[diesel(table_name = batches, check_for_backend(diesel::mysql::Mysql))]
pub struct UnpublishedBatch {
    /// Also the batch's name.
    pub first_id: u64,
    pub last_id: u64,
    pub created_at: NaiveDateTime,
}

impl UnpublishedBatch {
    /// Records notifications `first..=last` as not yet published; call in
    /// the transaction that inserts them. The batch is named by `first`.
    pub async fn record(
        conn: &mut AsyncMysqlConnection,
        first: u64,
        last: u64,
        at: NaiveDateTime,
    ) -> Result<(), StoreError> {
        diesel::insert_into(batches::table)
            .values((
                batches::first_id.eq(first),
                batches::last_id.eq(last),
                batches::created_at.eq(at),
            ))
            .execute(conn)
            .await?;
        Ok(())
    }

    /// Forgets published batches.
    pub async fn delete(conn: &mut AsyncMysqlConnection, ids: &[u64]) -> Result<usize, StoreError> {
        Ok(
            diesel::delete(batches::table.filter(batches::first_id.eq_any(ids)))
                .execute(conn)
                .await?,
        )
    }

    /// Locks up to `limit` batches recorded before `before`, skipping those
    /// another node is sweeping (so every node may sweep at once). Call in
    /// a transaction and delete them in it once republished.
    pub async fn lock_due(
        conn: &mut AsyncMysqlConnection,
        before: NaiveDateTime,
        limit: i64,
    ) -> Result<Vec<UnpublishedBatch>, StoreError> {
        Ok(batches::table
            .filter(batches::created_at.lt(before))
            .order(batches::first_id.asc())
            .limit(limit)
            .select(UnpublishedBatch::as_select())
            .for_update()
            .skip_locked()
            .load(conn)
            .await?)
    }
}

/// How long published batches are gathered before their rows are deleted
/// in one statement: at everyday load each POST is a batch of its own, and
/// a delete (one statement, one fsync) per batch cost as much as storing
/// it. The sweep leaves batches younger than its minimum age (10 s by
/// default) alone, so a row that waits here is never republished.
pub const FORGET_EVERY: std::time::Duration = std::time::Duration::from_millis(500);
/// At most this many batches per statement.
const FORGET_AT_MOST: usize = 1000;

/// Deletes outbox rows as the publisher reports their batches published,
/// gathered for [`FORGET_EVERY`] from the first report of a round (or up to
/// [`FORGET_AT_MOST`] batches) into one statement. Returns when the
/// publisher is gone, after deleting what it reported last.
pub async fn forget_published(
    db: crate::DbPool,
    mut published: tokio::sync::mpsc::Receiver<Vec<u64>>,
) {
    let mut reports = Vec::new();
    loop {
        // Idle until a batch is published: no timer runs meanwhile.
        if published.recv_many(&mut reports, 64).await == 0 {
            return;
        }
        let mut ids: Vec<u64> = reports.drain(..).flatten().collect();
        let deadline = tokio::time::sleep(FORGET_EVERY);
        tokio::pin!(deadline);
        let mut open = true;
        while ids.len() < FORGET_AT_MOST {
            tokio::select! {
                _ = &mut deadline => break,
                received = published.recv_many(&mut reports, 64) => {
                    if received == 0 {
                        open = false;
                        break;
                    }
                    ids.extend(reports.drain(..).flatten());
                }
            }
        }
        forget(&db, &ids).await;
        if !open {
            return;
        }
    }
}

async fn forget(db: &crate::DbPool, ids: &[u64]) {
    let result = match crate::pool::get(db).await {
        Ok(mut conn) => UnpublishedBatch::delete(&mut conn, ids).await,
        Err(e) => Err(e),
    };
    if let Err(error) = result {
        // Left in the outbox, these are republished by the sweep.
        tracing::warn!(%error, batches = ids.len(), "could not clear published batches");
    }
}
