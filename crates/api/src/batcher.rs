//! Write-behind batching of new notifications.
//!
//! Each request hands its rows to one batching task and waits for them to be
//! committed. While a transaction is in flight, requests that arrive queue
//! up; the next transaction takes all of them at once: one multi-row INSERT
//! and one commit for many requests. Under light load a request is written
//! alone and at once (no artificial delay); under heavy load the batches grow
//! by themselves, which is what makes MySQL keep up. A request is answered
//! only after its rows are durable.
//!
//! A batch grows only while its rows fit one statement (placeholders, and
//! bytes against the server's `max_allowed_packet`). A single request too
//! large for one statement (1,000 recipients of a long message) is written
//! with several INSERTs in one transaction, each recorded in the outbox as
//! a batch of its own: its ids are consecutive, while ids of two statements
//! need not be, as other transactions may insert between them.
//!
//! A batch that fails for a reason other than MySQL being away is retried
//! one request at a time, so one bad request cannot fail its neighbours.
//!
//! Each of the `in_flight` writers keeps its MySQL connection between
//! batches (its prepared statements stay warm and no checkout ping is paid
//! per batch); a connection that failed is dropped and the next batch takes
//! a fresh, verified one from the pool.

use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel_async::{AsyncConnection, RunQueryDsl};
use notify_protocol::{ChannelNames, Event};
use notify_store::{
    DbConn, DbPool, IdempotencyKey, NewNotification, Notification, StatementLimit, StoreError,
    UnpublishedBatch,
};
use tokio::sync::{mpsc, oneshot};

use notify_bus::Publisher;

/// How long a writer may keep an unused connection.
const KEEP_IDLE: Duration = Duration::from_secs(5);

/// A failed statement on a connection that no longer answers means MySQL
/// went away mid-transaction (503, retry), not a bad request (500).
async fn classify(conn: &mut DbConn, error: StoreError) -> StoreError {
    if error.is_unavailable() {
        return error;
    }
    let alive = tokio::time::timeout(
        Duration::from_secs(1),
        diesel::sql_query("SELECT 1").execute(&mut **conn),
    )
    .await;
    match alive {
        Ok(Ok(_)) => error,
        _ => StoreError::Unavailable(error.to_string()),
    }
}

/// What a request stores: the same content for each recipient.
pub struct Submission {
    pub recipients: Vec<String>,
    pub kind: String,
    pub title: String,
    pub message: String,
    pub link: Option<String>,
    pub metadata: Option<String>,
    /// The API key that sent it.
    pub source: String,
    /// The claimed `Idempotency-Key`, completed in the same transaction.
    pub idempotency_key: Option<String>,
    pub reply: Reply,
}

/// The shape of the success response, stored with an idempotency key.
#[derive(Clone, Copy)]
pub enum Reply {
    /// `{"ids":[...]}`
    Ids,
    /// `{"id":N}`
    Id,
}

impl Submission {
    /// Its rows, one per recipient, as they are inserted.
    fn rows(&self, created_at: chrono::NaiveDateTime) -> impl Iterator<Item = NewNotification<'_>> {
        self.recipients.iter().enumerate().map(move |(i, user_id)| {
            let key = self
                .idempotency_key
                .as_ref()
                .map(|key| format!("{key}#{i}"));
            self.row(user_id, created_at, key)
        })
    }

    fn row<'a>(
        &'a self,
        user_id: &'a str,
        created_at: chrono::NaiveDateTime,
        idempotency_key: Option<String>,
    ) -> NewNotification<'a> {
        NewNotification {
            user_id,
            kind: &self.kind,
            title: &self.title,
            message: &self.message,
            link: self.link.as_deref(),
            metadata: self.metadata.as_deref(),
            created_at,
            source: Some(&self.source),
            idempotency_key,
        }
    }

    /// What its rows add to an INSERT, at most.
    /// Counted without formatting the per-row idempotency keys: this runs
    /// for every request as it arrives.
    fn estimated_bytes(&self) -> usize {
        let at = chrono::NaiveDateTime::default();
        let key_bytes = |i: usize| {
            let digits = i.checked_ilog10().map_or(1, |d| d as usize + 1);
            self.idempotency_key
                .as_ref()
                .map_or(0, |key| key.len() + 1 + digits)
        };
        self.recipients
            .iter()
            .enumerate()
            .map(|(i, user_id)| self.row(user_id, at, None).estimated_bytes() + key_bytes(i))
            .sum()
    }
}

impl Reply {
    fn body(self, ids: &[u64]) -> String {
        match self {
            Reply::Ids => serde_json::json!({ "ids": ids }).to_string(),
            Reply::Id => serde_json::json!({ "id": ids.first() }).to_string(),
        }
    }
}

struct Job {
    submission: Submission,
    /// Of its rows in an INSERT, estimated once.
    bytes: usize,
    done: oneshot::Sender<Result<String, StoreError>>,
}

#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::Sender<Job>,
}

struct Flusher {
    db: DbPool,
    publisher: Publisher,
    channels: ChannelNames,
    statements: StatementLimit,
}

impl Batcher {
    /// Starts the batching task; at most `in_flight` transactions run at
    /// once, each INSERT within `statements`. The task ends when every
    /// `Batcher` clone is dropped.
    pub fn start(
        db: DbPool,
        publisher: Publisher,
        channels: ChannelNames,
        in_flight: usize,
        statements: StatementLimit,
    ) -> Batcher {
        let (tx, rx) = mpsc::channel(8192);
        let flusher = Arc::new(Flusher {
            db,
            publisher,
            channels,
            statements,
        });
        let in_flight = in_flight.max(1);
        let (writers_tx, writers_rx) = mpsc::channel(in_flight);
        for _ in 0..in_flight {
            let _ = writers_tx.try_send(Writer { conn: None });
        }
        tokio::spawn(collect(rx, flusher, writers_tx, writers_rx));
        Batcher { tx }
    }

    /// Stores the submission; resolves with the response body once its rows
    /// are committed (and their events queued for publishing).
    pub async fn submit(&self, submission: Submission) -> Result<String, StoreError> {
        let (done, result) = oneshot::channel();
        let bytes = submission.estimated_bytes();
        self.tx
            .send(Job {
                submission,
                bytes,
                done,
            })
            .await
            .map_err(|_| StoreError::Unavailable("writer stopped".into()))?;
        result
            .await
            .map_err(|_| StoreError::Unavailable("writer stopped".into()))?
    }
}

/// One transaction slot and the connection it keeps between batches.
struct Writer {
    /// With the time it was last used: an idle connection is given back
    /// rather than trusted (MySQL may have restarted meanwhile).
    conn: Option<(DbConn, Instant)>,
}

async fn collect(
    mut rx: mpsc::Receiver<Job>,
    flusher: Arc<Flusher>,
    writers_tx: mpsc::Sender<Writer>,
    mut writers: mpsc::Receiver<Writer>,
) {
    let mut carry: Option<Job> = None;
    loop {
        let first = match carry.take() {
            Some(job) => job,
            None => match rx.recv().await {
                Some(job) => job,
                None => return,
            },
        };
        // Waiting for a free writer is what lets a batch grow.
        let Some(mut writer) = writers.recv().await else {
            return;
        };
        let limit = flusher.statements;
        let (mut rows, mut bytes) = (first.submission.recipients.len(), first.bytes);
        let mut batch = vec![first];
        while let Ok(job) = rx.try_recv() {
            let (more_rows, more_bytes) =
                (rows + job.submission.recipients.len(), bytes + job.bytes);
            if !limit.fits(more_rows, more_bytes) {
                carry = Some(job);
                break;
            }
            (rows, bytes) = (more_rows, more_bytes);
            batch.push(job);
        }
        let flusher = flusher.clone();
        let writers_tx = writers_tx.clone();
        tokio::spawn(async move {
            flusher.flush(&mut writer, batch).await;
            let _ = writers_tx.send(writer).await;
        });
    }
}

/// Times a batch rolled back as a deadlock victim is run in all.
const DEADLOCK_ATTEMPTS: u32 = 3;

impl Flusher {
    async fn flush(&self, writer: &mut Writer, batch: Vec<Job>) {
        let subs: Vec<&Submission> = batch.iter().map(|j| &j.submission).collect();
        let result = self.write_retrying(writer, &subs).await;
        match result {
            Ok(bodies) => {
                for (job, body) in batch.into_iter().zip(bodies) {
                    let _ = job.done.send(Ok(body));
                }
            }
            Err(error) if batch.len() == 1 => {
                if let Some(job) = batch.into_iter().next() {
                    let _ = job.done.send(Err(error));
                }
            }
            Err(error) if error.is_unavailable() => {
                let message = error.to_string();
                for job in batch {
                    let _ = job.done.send(Err(StoreError::Unavailable(message.clone())));
                }
            }
            Err(error) => {
                tracing::warn!(%error, requests = batch.len(), "batch failed, retrying requests one by one");
                for job in batch {
                    let result = self
                        .write_retrying(writer, &[&job.submission])
                        .await
                        .map(|mut b| b.remove(0));
                    let _ = job.done.send(result);
                }
            }
        }
    }

    /// [`Self::write`], run again when InnoDB rolled it back as a deadlock's
    /// victim (with the outbox's deletes, for instance): the server asks for
    /// exactly that, nothing of it was kept, and it failed at once (a lock
    /// wait timeout, which takes seconds, is not retried here).
    async fn write_retrying(
        &self,
        writer: &mut Writer,
        subs: &[&Submission],
    ) -> Result<Vec<String>, StoreError> {
        let mut attempt = 1;
        loop {
            match self.write(writer, subs).await {
                Err(error) if error.is_deadlock() && attempt < DEADLOCK_ATTEMPTS => {
                    tracing::debug!(%error, attempt, "batch rolled back as a deadlock victim, running it again");
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    /// One transaction for all submissions; returns each one's response
    /// body and publishes the events after the commit.
    async fn write(
        &self,
        writer: &mut Writer,
        subs: &[&Submission],
    ) -> Result<Vec<String>, StoreError> {
        let created_at = notify_store::now();
        let rows: Vec<NewNotification> = subs.iter().flat_map(|s| s.rows(created_at)).collect();
        let statements = self.statements.statements(&rows);
        let mut conn = match writer.conn.take() {
            Some((conn, used)) if used.elapsed() < KEEP_IDLE => conn,
            _ => notify_store::pool::get(&self.db).await?,
        };
        let result = conn
            .transaction(async |conn| {
                let mut ids = Vec::with_capacity(rows.len());
                for statement in &statements {
                    let statement_ids =
                        Notification::insert_batch_on(conn, statement, self.statements.returning)
                            .await?;
                    if let (Some(&first), Some(&last)) =
                        (statement_ids.as_slice().first(), statement_ids.last())
                    {
                        UnpublishedBatch::record(conn, first, last, created_at).await?;
                    }
                    ids.extend(statement_ids);
                }
                let mut bodies = Vec::with_capacity(subs.len());
                let mut offset = 0;
                for s in subs {
                    let own = &ids[offset..offset + s.recipients.len()];
                    offset += s.recipients.len();
                    let body = s.reply.body(own);
                    if let Some(key) = &s.idempotency_key {
                        IdempotencyKey::complete(conn, &s.source, key, &body).await?;
                    }
                    bodies.push(body);
                }
                Ok::<_, StoreError>((ids, bodies))
            })
            .await;
        let (ids, bodies) = match result {
            Ok(done) => done,
            Err(error) => return Err(classify(&mut conn, error).await),
        };
        // Kept only after success: a failed connection may be broken.
        writer.conn = Some((conn, Instant::now()));
        let mut offset = 0;
        for statement in statements {
            self.publish_statement(statement, &ids[offset..offset + statement.len()]);
            offset += statement.len();
        }
        Ok(bodies)
    }

    /// Queues the events of one statement's rows as the outbox batch named
    /// by its first id. Refused when the queue is full: the batch then stays
    /// in the outbox and the sweep publishes it.
    fn publish_statement(&self, rows: &[NewNotification], ids: &[u64]) {
        let Some(&batch) = ids.first() else {
            return;
        };
        let events = rows
            .iter()
            .zip(ids)
            .map(|(row, &id)| {
                let event = Event::Notification {
                    notification: row.stored(id).into_wire(),
                };
                (self.channels.user(row.user_id), event.to_frame())
            })
            .collect();
        self.publisher.publish_batch(batch, events);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_counts_the_rows_as_inserted() {
        for key in [None, Some("order-7".to_owned())] {
            let submission = Submission {
                recipients: (0..120).map(|i| format!("user-{i}")).collect(),
                kind: "comment".into(),
                title: "t".into(),
                message: "m".repeat(300),
                link: Some("https://example.com".into()),
                metadata: Some(r#"{"a":1}"#.into()),
                source: "key:1".into(),
                idempotency_key: key,
                reply: Reply::Ids,
            };
            let inserted: usize = submission
                .rows(chrono::NaiveDateTime::default())
                .map(|row| row.estimated_bytes())
                .sum();
            assert_eq!(submission.estimated_bytes(), inserted);
        }
    }
}
