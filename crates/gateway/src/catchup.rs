//! Catching a connection up from MySQL on what it may have missed: after a
//! resume (the client names the last id it has), after the node lost Redis
//! or was greeted before its subscription was confirmed (everything created
//! since a time). A catch-up that cannot read MySQL is tried again later.

use std::time::Duration;

use chrono::{NaiveDateTime, TimeDelta};
use notify_protocol::{Event, ServerFrame};
use notify_store::delivery::CatchUp;
use notify_store::{DbPool, Notification};

use crate::connection::{Sent, State, Who};
use crate::node::Node;
use crate::socket::{Dialect, End, Socket};

/// First wait before a failed catch-up is tried again; it doubles per
/// failure.
const CATCHUP_RETRY: Duration = Duration::from_secs(1);
/// Failed tries of a catch-up before the client is told to resume later.
const CATCHUP_ATTEMPTS: u32 = 6;
/// Most notifications sent in one resume or resync batch; older ones are
/// paged through the api.
pub const RESUME_LIMIT: i64 = 500;

/// What a connection catches up on.
#[derive(Clone, Copy)]
pub(crate) enum Catchup {
    /// The client has everything up to this id (resume).
    After(u64),
    /// The bus was lost: everything created since then.
    Since(NaiveDateTime),
}

/// Failed catch-ups, merged: the widest of each kind is what is owed.
pub(crate) struct Retry {
    after: Option<u64>,
    since: Option<NaiveDateTime>,
    attempts: u32,
    /// When to try again; boxed with the rest, so a connection that never
    /// retries carries no timer.
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl Retry {
    fn new() -> Self {
        Retry {
            after: None,
            since: None,
            attempts: 0,
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
        }
    }

    fn add(&mut self, catchup: Catchup) {
        match catchup {
            Catchup::After(after) => self.after = Some(self.after.map_or(after, |a| a.min(after))),
            Catchup::Since(since) => self.since = Some(self.since.map_or(since, |s| s.min(since))),
        }
    }

    fn done(&mut self, catchup: Catchup) {
        match catchup {
            Catchup::After(_) => self.after = None,
            Catchup::Since(_) => self.since = None,
        }
    }

    fn catchups(&self) -> Vec<Catchup> {
        let after = self.after.map(Catchup::After);
        let since = self.since.map(Catchup::Since);
        after.into_iter().chain(since).collect()
    }

    /// The next try, later after each failure.
    fn schedule(&mut self) {
        let wait = CATCHUP_RETRY * 2u32.saturating_pow(self.attempts.min(5));
        self.sleep
            .as_mut()
            .reset(tokio::time::Instant::now() + wait);
    }
}

/// Catches up, or, when MySQL cannot be read now (pool busy, MySQL away),
/// schedules another try.
pub(crate) async fn catch_up(
    node: &Node,
    who: &Who<'_>,
    catchup: Catchup,
    state: &mut State,
    socket: &mut Socket,
) -> Result<(), End> {
    match backfill(node, who, catchup, &mut state.sent, socket).await? {
        Ok(()) => Ok(()),
        Err(error) => {
            tracing::warn!(%error, "could not read missed notifications, trying again");
            let retry = state.retry.get_or_insert_with(|| Box::new(Retry::new()));
            retry.add(catchup);
            retry.schedule();
            Ok(())
        }
    }
}

/// Resolves when a failed catch-up is due to be tried again; never when
/// none waits.
pub(crate) async fn retry_due(retry: &mut Option<Box<Retry>>) {
    match retry {
        Some(retry) => retry.sleep.as_mut().await,
        None => std::future::pending().await,
    }
}

pub(crate) async fn retry_catch_up(
    node: &Node,
    who: &Who<'_>,
    mut retry: Retry,
    state: &mut State,
    socket: &mut Socket,
) -> Result<(), End> {
    for catchup in retry.catchups() {
        if let Err(error) = backfill(node, who, catchup, &mut state.sent, socket).await? {
            if retry.attempts + 1 >= CATCHUP_ATTEMPTS {
                tracing::warn!(%error, "could not read missed notifications, giving up");
                let frame = ServerFrame::Error {
                    code: "unavailable",
                    message: "could not read missed notifications; resume again later",
                    topic: None,
                }
                .to_frame();
                return socket.text(node, frame).await;
            }
            retry.attempts += 1;
            retry.schedule();
            state.retry = Some(Box::new(retry));
            return Ok(());
        }
        retry.done(catchup);
    }
    Ok(())
}

/// Sends, in id order, what the client may have missed, skipping what this
/// connection already sent, then a `resumed` frame. The inner error: MySQL
/// could not be read, nothing was sent.
async fn backfill(
    node: &Node,
    who: &Who<'_>,
    catchup: Catchup,
    sent: &mut Sent,
    socket: &mut Socket,
) -> Result<Result<(), notify_store::StoreError>, End> {
    let missed = {
        let _turn = who.registration.db_turn().await;
        let _permit = node.backfills.acquire().await;
        // A Socket.IO app does not drop duplicates by id: its resume
        // sends only what lies above the id it holds (docs/protocol.md).
        let lag = match socket.dialect {
            Dialect::Native => Some(node.publish_lag),
            Dialect::SocketIo(_) => None,
        };
        read_missed(&node.db, who.user, catchup, lag).await
    };
    let CatchUp {
        rows,
        truncated,
        unread_count,
    } = match missed {
        Ok(found) => found,
        Err(error) => return Ok(Err(error)),
    };
    let oldest = rows.first().map(|n| n.id);
    let seen = sent.get_or_insert_with(Box::default);
    let mut count = 0;
    for row in rows {
        if !seen.first_time(row.id) {
            continue;
        }
        let frame = Event::Notification {
            notification: row.into_wire(),
        }
        .to_frame();
        socket.text(node, frame).await?;
        count += 1;
    }
    let resumed = ServerFrame::Resumed {
        count,
        truncated,
        oldest_id: oldest,
        unread_count,
    };
    socket.text(node, resumed.to_frame()).await?;
    Ok(Ok(()))
}

async fn read_missed(
    db: &DbPool,
    user: &str,
    catchup: Catchup,
    publish_lag: Option<TimeDelta>,
) -> Result<CatchUp, notify_store::StoreError> {
    let mut conn = notify_store::pool::get(db).await?;
    let (after, since) = match catchup {
        Catchup::After(after) => (Some(after), None),
        Catchup::Since(since) => (None, Some(since)),
    };
    Notification::catch_up(&mut conn, user, after, since, publish_lag, RESUME_LIMIT).await
}
