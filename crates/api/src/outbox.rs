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
use notify_bus::{publish_now, RedisPool};
use notify_protocol::{ChannelNames, Event};
use notify_store::{DbPool, Notification, StoreError, UnpublishedBatch};
use tokio::sync::mpsc;

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

/// Deletes outbox rows as the publisher reports their batches published.
pub async fn forget_published(db: DbPool, mut published: mpsc::Receiver<Vec<u64>>) {
    let mut reports = Vec::new();
    while published.recv_many(&mut reports, 64).await > 0 {
        let ids: Vec<u64> = reports.drain(..).flatten().collect();
        let result = match notify_store::pool::get(&db).await {
            Ok(mut conn) => UnpublishedBatch::delete(&mut conn, &ids).await,
            Err(e) => Err(e),
        };
        if let Err(error) = result {
            // Left in the outbox, these are republished by the sweep.
            tracing::warn!(%error, batches = ids.len(), "could not clear published batches");
        }
    }
}

/// Sweeps forever, page after page while pages come back full.
pub async fn sweep(db: DbPool, redis: RedisPool, channels: ChannelNames, settings: Settings) {
    let mut tick = tokio::time::interval(settings.every);
    loop {
        tick.tick().await;
        loop {
            match sweep_page(&db, &redis, &channels, settings.min_age).await {
                Ok((batches, notifications)) if batches > 0 => {
                    tracing::info!(
                        batches,
                        notifications,
                        "republished notifications whose events were never published"
                    );
                    if batches < SWEEP_PAGE as usize {
                        break;
                    }
                }
                Ok(_) => break,
                Err(error) => {
                    tracing::debug!(%error, "sweep skipped");
                    break;
                }
            }
        }
    }
}

async fn sweep_page(
    db: &DbPool,
    redis: &RedisPool,
    channels: &ChannelNames,
    min_age: Duration,
) -> Result<(usize, usize), StoreError> {
    let mut conn = notify_store::pool::get(db).await?;
    let now = notify_store::now();
    let before = now - TimeDelta::from_std(min_age).unwrap_or(TimeDelta::seconds(10));
    conn.transaction(async |conn| {
        let due = UnpublishedBatch::lock_due(conn, before, SWEEP_PAGE).await?;
        if due.is_empty() {
            return Ok((0, 0));
        }
        let mut events = Vec::new();
        for batch in due.iter().filter(|b| b.created_at >= now - SWEEP_MAX_AGE) {
            for n in Notification::range(conn, batch.first_id, batch.last_id).await? {
                let channel = channels.user(&n.user_id);
                let frame = Event::Notification {
                    notification: n.into_wire(),
                }
                .to_frame();
                events.push((channel, frame));
            }
        }
        if !events.is_empty() {
            publish_now(redis, events.iter().map(|(c, p)| (c.as_str(), p.as_str())))
                .await
                .map_err(StoreError::Unavailable)?;
        }
        let ids: Vec<u64> = due.iter().map(|b| b.first_id).collect();
        UnpublishedBatch::delete(conn, &ids).await?;
        Ok::<_, StoreError>((ids.len(), events.len()))
    })
    .await
}
