//! Every stored notification's event is published at least once.
//!
//! The publisher reports which notification events reached Redis and they
//! are marked `published_at`. A notification left unmarked (the api died
//! between commit and publish, or Redis was away longer than the publisher
//! retries) is found by the sweep, which every api node runs: it locks a
//! page of old unpublished rows (skipping rows another node has locked),
//! publishes them and marks them in the same transaction. An event may so be
//! published twice; clients drop duplicates by id.

use std::time::Duration;

use chrono::TimeDelta;
use diesel_async::AsyncConnection;
use notify_bus::{publish_now, RedisPool};
use notify_protocol::{ChannelNames, Event};
use notify_store::{DbPool, Notification, StoreError};
use tokio::sync::mpsc;

/// Rows swept per transaction.
const SWEEP_PAGE: i64 = 500;

pub struct Settings {
    /// How often each node sweeps.
    pub every: Duration,
    /// Rows younger than this are left to the normal path.
    pub min_age: Duration,
}

/// Marks published notification events as they are reported.
pub async fn mark_published(db: DbPool, mut published: mpsc::Receiver<Vec<u64>>) {
    let mut ids = Vec::new();
    let mut reports = Vec::new();
    while published.recv_many(&mut reports, 64).await > 0 {
        ids.extend(reports.drain(..).flatten());
        for chunk in ids.chunks(1000) {
            let result = match notify_store::pool::get(&db).await {
                Ok(mut conn) => {
                    Notification::mark_published(&mut conn, chunk, notify_store::now()).await
                }
                Err(e) => Err(e),
            };
            if let Err(error) = result {
                // Left unmarked, these are republished by the sweep.
                tracing::warn!(%error, rows = chunk.len(), "could not mark notifications published");
            }
        }
        ids.clear();
    }
}

/// Sweeps forever, one page per tick while pages come back full.
pub async fn sweep(db: DbPool, redis: RedisPool, channels: ChannelNames, settings: Settings) {
    let mut tick = tokio::time::interval(settings.every);
    loop {
        tick.tick().await;
        loop {
            match sweep_page(&db, &redis, &channels, settings.min_age).await {
                Ok(swept) if swept > 0 => {
                    tracing::info!(
                        swept,
                        "republished notifications whose events were never published"
                    );
                    if swept < SWEEP_PAGE as usize {
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
) -> Result<usize, StoreError> {
    let mut conn = notify_store::pool::get(db).await?;
    let age = TimeDelta::from_std(min_age).unwrap_or(TimeDelta::seconds(10));
    let before = notify_store::now() - age;
    conn.transaction(async |conn| {
        let rows = Notification::lock_unpublished(conn, before, SWEEP_PAGE).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let ids: Vec<u64> = rows.iter().map(|n| n.id).collect();
        let events: Vec<(String, String)> = rows
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
        publish_now(redis, events.iter().map(|(c, p)| (c.as_str(), p.as_str())))
            .await
            .map_err(StoreError::Unavailable)?;
        Notification::mark_published(conn, &ids, notify_store::now()).await?;
        Ok::<_, StoreError>(ids.len())
    })
    .await
}
