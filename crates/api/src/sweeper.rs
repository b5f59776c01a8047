//! Every stored notification's event is published at least once.
//!
//! Each committed batch of new notifications leaves a row in the outbox
//! (`unpublished_batches`, written in the same transaction); the publisher
//! reports when all of a batch's events reached Redis and the row is
//! deleted. A row that stays (the api died between commit and publish, or
//! Redis was away longer than the publisher retries) is found by the sweep,
//! which every api node runs: it locks due rows (skipping rows another node
//! has locked), republishes their notifications and deletes them in the
//! same transaction. An event may so be published twice; clients drop
//! duplicates by id.

use std::time::Duration;

use chrono::TimeDelta;
use diesel_async::AsyncConnection;
use notify_bus::{publish_now, RedisPool, MAX_PIPELINE};
use notify_protocol::{ChannelNames, Event};
use notify_store::{DbPool, Notification, StoreError, UnpublishedBatch};

/// Batches swept per transaction.
const SWEEP_PAGE: i64 = 50;
/// Batches older than this are dropped unpublished: a live event that late
/// is no longer news, and clients get those rows when they resume or page.
const SWEEP_MAX_AGE: TimeDelta = TimeDelta::hours(1);

pub struct Settings {
    /// How often each node sweeps.
    pub every: Duration,
    /// Batches younger than this are left to the normal path.
    pub min_age: Duration,
}

/// Sweeps forever: page after page while pages come back full and whole.
pub async fn sweep(db: DbPool, redis: RedisPool, channels: ChannelNames, settings: Settings) {
    let mut tick = tokio::time::interval(settings.every);
    loop {
        tick.tick().await;
        loop {
            match sweep_page(&db, &redis, &channels, settings.min_age).await {
                Ok(page) => {
                    if page.batches > 0 {
                        tracing::info!(
                            batches = page.batches,
                            notifications = page.notifications,
                            "republished notifications whose events were never published"
                        );
                    }
                    if let Some(error) = page.failed {
                        // What was published is forgotten; the rest waits
                        // for the next round.
                        tracing::warn!(%error, "sweep could not republish a batch, retrying later");
                        break;
                    }
                    if page.locked < SWEEP_PAGE as usize {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "sweep skipped");
                    break;
                }
            }
        }
    }
}

/// What one page of the sweep did.
struct Page {
    /// Due batches this page locked.
    locked: usize,
    /// Batches republished (or dropped as too old) and deleted.
    batches: usize,
    notifications: usize,
    /// Why the page stopped early, if it did.
    failed: Option<String>,
}

async fn sweep_page(
    db: &DbPool,
    redis: &RedisPool,
    channels: &ChannelNames,
    min_age: Duration,
) -> Result<Page, StoreError> {
    let mut conn = notify_store::pool::get(db).await?;
    let now = notify_store::now();
    let before = now - TimeDelta::from_std(min_age).unwrap_or(TimeDelta::seconds(10));
    conn.transaction(async |conn| {
        let due = UnpublishedBatch::lock_due(conn, before, SWEEP_PAGE).await?;
        let mut page = Page {
            locked: due.len(),
            batches: 0,
            notifications: 0,
            failed: None,
        };
        let mut done = Vec::with_capacity(due.len());
        for batch in &due {
            if batch.created_at >= now - SWEEP_MAX_AGE {
                match republish(conn, redis, channels, batch).await? {
                    Ok(count) => page.notifications += count,
                    Err(error) => {
                        page.failed = Some(error);
                        break;
                    }
                }
            }
            done.push(batch.first_id);
        }
        // Batches published before a failure are forgotten in any case:
        // each page makes progress.
        if !done.is_empty() {
            UnpublishedBatch::delete(conn, &done).await?;
        }
        page.batches = done.len();
        Ok::<_, StoreError>(page)
    })
    .await
}

/// Publishes one batch's notifications, reading and sending them a
/// pipeline at a time so a batch of thousands of large rows neither sits in
/// memory whole nor becomes one pipeline Redis answers too slowly. The
/// outer error is MySQL's, the inner Redis's.
async fn republish(
    conn: &mut diesel_async::AsyncMysqlConnection,
    redis: &RedisPool,
    channels: &ChannelNames,
    batch: &UnpublishedBatch,
) -> Result<Result<usize, String>, StoreError> {
    let mut count = 0;
    let mut first = batch.first_id;
    while first <= batch.last_id {
        let last = batch.last_id.min(first + MAX_PIPELINE as u64 - 1);
        let events: Vec<(String, String)> = Notification::range(conn, first, last)
            .await?
            .into_iter()
            .map(|n| {
                let channel = channels.user(&n.user_id);
                let frame = Event::Notification {
                    notification: n.into_wire(),
                }
                .to_frame();
                (channel, frame)
            })
            .collect();
        if !events.is_empty() {
            if let Err(error) =
                publish_now(redis, events.iter().map(|(c, p)| (c.as_str(), p.as_str()))).await
            {
                return Ok(Err(error));
            }
        }
        count += events.len();
        first = last + 1;
    }
    Ok(Ok(count))
}
