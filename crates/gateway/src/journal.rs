//! What the node records about each connection: a `connection_logs` row
//! (written when it is established, completed when it ends; a refused
//! attempt gets one too), its live session in Redis, and an info log line
//! at connect and disconnect, never with a token.
//!
//! Rows go through a bounded queue to one writer task that inserts them in
//! batches, so a connection never waits on MySQL: when the queue is full or
//! MySQL refuses a batch, the rows are dropped and counted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDateTime;
use notify_bus::LiveSession;
use notify_store::connection_log::{clip, MAX_REASON_CHARS, MAX_USER_AGENT_CHARS};
use notify_store::{ConnectionRecord, DbPool};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::batching::{write_batches, Batch};
use crate::sessions::{hex, Sessions};
use crate::socket::{End, Socket};

/// Longest a row waits before being written: long enough that a burst of
/// connects costs a few large INSERTs rather than many small ones.
const FLUSH_EVERY: Duration = Duration::from_millis(500);
/// Rows that trigger an early write.
const BATCH: usize = notify_store::connection_log::MAX_ROWS_PER_STATEMENT * 2;

/// What the upgrade knew about the client.
#[derive(Debug, Clone, Default)]
pub struct Peer {
    /// As seen through trusted proxies.
    pub address: Option<String>,
    pub user_agent: Option<String>,
}

/// One connection attempt: its session id, when it began and from where.
pub struct Attempt {
    pub session: crate::sessions::SessionId,
    pub at: NaiveDateTime,
    /// Given up once the connection is established: its row and live
    /// session carry it from then on.
    pub peer: Option<Box<Peer>>,
}

impl Attempt {
    pub fn new(peer: Box<Peer>) -> Self {
        Self {
            session: crate::sessions::SessionId::random(),
            at: notify_store::now(),
            peer: Some(peer),
        }
    }
}

#[derive(Debug, Default)]
pub struct JournalStats {
    pub written: AtomicU64,
    /// Rows lost: the queue was full or MySQL refused them.
    pub dropped: AtomicU64,
}

pub struct Journal {
    node: String,
    instance: String,
    /// None when connection logging is off.
    tx: Option<mpsc::Sender<ConnectionRecord>>,
    sessions: Arc<Sessions>,
    pub stats: Arc<JournalStats>,
    stop: watch::Sender<bool>,
}

impl Journal {
    /// Starts the writer (unless `enabled` is false); it ends after
    /// [`Journal::close`], once what is queued is written.
    pub fn start(
        node: String,
        instance: String,
        db: DbPool,
        sessions: Arc<Sessions>,
        capacity: usize,
        enabled: bool,
    ) -> (Journal, Option<JoinHandle<()>>) {
        let stats = Arc::new(JournalStats::default());
        let (stop, stopped) = watch::channel(false);
        let (tx, task) = if enabled {
            let (tx, rx) = mpsc::channel(capacity.max(1));
            let task = tokio::spawn(write(db, rx, stopped, stats.clone()));
            (Some(tx), Some(task))
        } else {
            (None, None)
        };
        let journal = Journal {
            node,
            instance,
            tx,
            sessions,
            stats,
            stop,
        };
        (journal, task)
    }

    /// Takes no more rows; the writer writes what is queued and ends.
    pub fn close(&self) {
        self.stop.send_replace(true);
    }

    /// The connection is established; the returned record closes its row
    /// and live session when the connection ends, even by panic.
    pub fn opened<'a>(&'a self, attempt: &mut Attempt, user: &'a str) -> OpenRecord<'a> {
        let mut peer = attempt.peer.take().unwrap_or_default();
        peer.user_agent = peer
            .user_agent
            .as_deref()
            .map(|ua| clip(ua, MAX_USER_AGENT_CHARS));
        let session_id = hex(attempt.session);
        tracing::info!(user, session = %session_id, node = %self.node, "connection opened");
        let live = LiveSession {
            session_id: session_id.clone(),
            node: self.node.clone(),
            client_address: peer.address.clone(),
            user_agent: peer.user_agent.clone(),
            connected_at: notify_protocol::event::format_timestamp(&attempt.at.and_utc()),
        };
        self.sessions.open(attempt.session, user, live.to_json());
        self.record(ConnectionRecord {
            user_agent: peer.user_agent,
            client_address: peer.address,
            ..self.row(attempt, Some(user))
        });
        OpenRecord {
            journal: self,
            attempt: Attempt {
                session: attempt.session,
                at: attempt.at,
                peer: None,
            },
            user,
            done: false,
        }
    }

    /// The established connection ended.
    fn closed(&self, attempt: &Attempt, user: &str, end: &End, socket: Option<&Socket>) {
        self.sessions.close(attempt.session);
        let (code, reason) = close_of(end);
        let now = notify_store::now();
        let duration_ms = (now - attempt.at).num_milliseconds();
        tracing::info!(
            user,
            session = %hex(attempt.session),
            node = %self.node,
            duration_ms,
            close_code = code,
            reason,
            "connection closed"
        );
        self.record(ConnectionRecord {
            disconnected_at: Some(now),
            close_code: code,
            close_reason: Some(clip(reason, MAX_REASON_CHARS)),
            frames_in: socket.map_or(0, |s| s.frames_in),
            frames_out: socket.map_or(0, |s| s.frames_out),
            bytes_out: socket.map_or(0, |s| s.bytes_out),
            ..self.row(attempt, Some(user))
        });
    }

    /// An attempt ended before the connection was established: `refused`
    /// is the error code.
    pub fn refused(
        &self,
        attempt: &Attempt,
        user: Option<&str>,
        refused: &str,
        end: &End,
        socket: Option<&Socket>,
    ) {
        let (code, reason) = close_of(end);
        tracing::info!(user, node = %self.node, refused, reason, "connection refused");
        self.record_refusal(ConnectionRecord {
            disconnected_at: Some(notify_store::now()),
            close_code: code,
            close_reason: Some(clip(reason, MAX_REASON_CHARS)),
            frames_in: socket.map_or(0, |s| s.frames_in),
            frames_out: socket.map_or(0, |s| s.frames_out),
            bytes_out: socket.map_or(0, |s| s.bytes_out),
            ..self.refusal_row(attempt, user, refused)
        });
    }

    /// An upgrade refused with HTTP `status` and error `code`.
    pub fn refused_upgrade(&self, attempt: &Attempt, code: &'static str, status: u16) {
        tracing::info!(node = %self.node, refused = code, status, "connection refused");
        self.record_refusal(ConnectionRecord {
            disconnected_at: Some(attempt.at),
            close_reason: Some(format!("refused before the upgrade (HTTP {status})")),
            ..self.refusal_row(attempt, None, code)
        });
    }

    /// The row of a refused attempt, with where it came from.
    fn refusal_row(&self, attempt: &Attempt, user: Option<&str>, code: &str) -> ConnectionRecord {
        let peer = attempt.peer.as_deref().cloned().unwrap_or_default();
        ConnectionRecord {
            client_address: peer.address,
            user_agent: peer
                .user_agent
                .as_deref()
                .map(|ua| clip(ua, MAX_USER_AGENT_CHARS)),
            refused: Some(code.to_owned()),
            ..self.row(attempt, user)
        }
    }

    fn row(&self, attempt: &Attempt, user: Option<&str>) -> ConnectionRecord {
        ConnectionRecord {
            session_id: hex(attempt.session),
            user_id: user.map(str::to_owned),
            node: self.node.clone(),
            instance: self.instance.clone(),
            client_address: None,
            user_agent: None,
            connected_at: attempt.at,
            disconnected_at: None,
            close_code: None,
            close_reason: None,
            refused: None,
            frames_in: 0,
            frames_out: 0,
            bytes_out: 0,
        }
    }

    /// Queues a refused attempt's row only while the queue is at most half
    /// full: a flood of refused attempts must not crowd out the rows of
    /// real connections.
    fn record_refusal(&self, record: ConnectionRecord) {
        match &self.tx {
            Some(tx) if tx.capacity() * 2 < tx.max_capacity() => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
            _ => self.record(record),
        }
    }

    fn record(&self, record: ConnectionRecord) {
        if let Some(tx) = &self.tx {
            if tx.try_send(record).is_err() {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// An established connection as the journal knows it, until it ends.
pub struct OpenRecord<'a> {
    journal: &'a Journal,
    attempt: Attempt,
    user: &'a str,
    done: bool,
}

impl OpenRecord<'_> {
    /// The connection ended (`end`, after what `socket` counted).
    pub fn closed(mut self, end: &End, socket: &Socket) {
        self.done = true;
        self.journal
            .closed(&self.attempt, self.user, end, Some(socket));
    }
}

impl Drop for OpenRecord<'_> {
    /// A connection task that ended without saying how (a panic) still
    /// closes its live session and its row.
    fn drop(&mut self) {
        if !self.done {
            let end = End::Close(actix_ws::CloseCode::Error, "connection task ended");
            self.journal.closed(&self.attempt, self.user, &end, None);
        }
    }
}

/// The close code and reason an end gives the connection log.
fn close_of(end: &End) -> (Option<u16>, &'static str) {
    match *end {
        End::Close(code, reason) => (Some(u16::from(code)), reason),
        End::Closed(code) => (code, "closed by the client"),
        End::Gone => (None, "connection lost"),
    }
}

/// Rows gathered for one write.
#[derive(Default)]
struct Rows(Vec<ConnectionRecord>);

impl Batch for Rows {
    type Item = ConnectionRecord;

    fn add(&mut self, row: ConnectionRecord) -> bool {
        self.0.push(row);
        self.0.len() >= BATCH
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

async fn write(
    db: DbPool,
    rx: mpsc::Receiver<ConnectionRecord>,
    stop: watch::Receiver<bool>,
    stats: Arc<JournalStats>,
) {
    write_batches(rx, stop, FLUSH_EVERY, |rows: Rows| {
        let (db, stats) = (db.clone(), stats.clone());
        async move { flush(&db, rows.0, &stats).await }
    })
    .await
}

/// Attempts at one batch when InnoDB rolls it back for a lock conflict:
/// gateways upserting rows at once can deadlock on the unique index.
const ATTEMPTS: u32 = 3;

async fn flush(db: &DbPool, rows: Vec<ConnectionRecord>, stats: &JournalStats) {
    let mut attempt = 1;
    let result = loop {
        let result = match notify_store::pool::get(db).await {
            Ok(mut conn) => ConnectionRecord::write_all(&mut conn, &rows).await,
            Err(e) => Err(e),
        };
        match result {
            Err(error) if error.is_lock_conflict() && attempt < ATTEMPTS => attempt += 1,
            result => break result,
        }
    };
    match result {
        Ok(()) => {
            stats
                .written
                .fetch_add(rows.len() as u64, Ordering::Relaxed);
        }
        Err(error) => {
            let dropped = stats
                .dropped
                .fetch_add(rows.len() as u64, Ordering::Relaxed);
            if dropped == 0 || dropped / 1000 != (dropped + rows.len() as u64) / 1000 {
                tracing::warn!(%error, rows = rows.len(), "could not write connection log rows; dropped");
            }
        }
    }
}
