//! Writing new messages in batches.
//!
//! A send hands its message to the process's writer tasks and waits for it
//! to be committed. While the writers' transactions are in flight, the
//! messages that arrive queue up, and the next free writer takes all of
//! them into one transaction (see
//! `notify_store::chat::Message::send_all`): under light load a message is
//! written alone and at once, with no added delay; under heavy load one
//! BEGIN, COMMIT and fsync serve many messages, which keeps MySQL's share
//! of each message small.
//!
//! A batch that fails for a reason other than MySQL being away (a deadlock,
//! an unexpected row) is written again one message per transaction, so one
//! message cannot fail its neighbours.

use std::sync::Arc;
use std::time::{Duration, Instant};

use notify_store::chat::{Message, NewMessage, Sent};
use notify_store::{DbConn, DbPool, StoreError};
use tokio::sync::{mpsc, oneshot, watch, Mutex};
use tokio::task::JoinHandle;

use notify_protocol::{ChatFrame, WireMessage};

use crate::rounds::Rounds;
use crate::{wire, ChatError, Fanout, OfflineNotices};

/// Messages waiting for the writer; a send beyond is refused `unavailable`
/// at once rather than waiting behind a MySQL that is not keeping up.
const QUEUE: usize = 4096;
/// Most messages in one transaction.
const BATCH: usize = 256;
/// Transactions in flight at once: while one waits for its commit's fsync,
/// the next takes what queued up meanwhile.
const WRITERS: usize = 2;

/// The stored message, and false when it was stored before under its
/// `client_id`.
type Reply = oneshot::Sender<Result<(WireMessage, bool), ChatError>>;

/// The queue of the writer tasks.
#[derive(Clone)]
pub(crate) struct Writer {
    tx: mpsc::Sender<(NewMessage, Reply)>,
    stop: Arc<watch::Sender<bool>>,
}

/// What the writers do with what they committed.
#[derive(Clone)]
struct Deliver {
    fanout: Fanout,
    offline: Option<OfflineNotices>,
}

impl Writer {
    /// Starts the task; it ends once [`Writer::close`] is called, after
    /// writing what was queued.
    pub(crate) fn start(
        db: DbPool,
        fanout: Fanout,
        offline: Option<OfflineNotices>,
    ) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (stop, stopped) = watch::channel(false);
        let rx = Arc::new(Mutex::new(rx));
        let deliver = Deliver { fanout, offline };
        let writers: Vec<_> = (0..WRITERS)
            .map(|_| {
                tokio::spawn(run(
                    db.clone(),
                    deliver.clone(),
                    rx.clone(),
                    stopped.clone(),
                ))
            })
            .collect();
        let task = tokio::spawn(async move {
            for writer in writers {
                let _ = writer.await;
            }
        });
        (
            Self {
                tx,
                stop: Arc::new(stop),
            },
            task,
        )
    }

    /// Stores `message` if its sender is a member and delivers it to every
    /// member; the stored message, and false when the sender had stored it
    /// before under its `client_id` (then nothing is delivered again).
    pub(crate) async fn write(
        &self,
        message: NewMessage,
    ) -> Result<(WireMessage, bool), ChatError> {
        let (reply, answer) = oneshot::channel();
        if self.tx.try_send((message, reply)).is_err() {
            tracing::warn!("chat message refused: the writer's queue is full or closed");
            return Err(ChatError::Unavailable);
        }
        answer.await.unwrap_or(Err(ChatError::Unavailable))
    }

    /// Takes no more messages; the task writes what is queued and ends.
    pub(crate) fn close(&self) {
        self.stop.send_replace(true);
    }
}

/// One writer: takes what has queued up (the receiver is shared, so one
/// writer takes while the other writes), writes it, and again.
async fn run(
    db: DbPool,
    deliver: Deliver,
    rx: Arc<Mutex<mpsc::Receiver<(NewMessage, Reply)>>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut jobs = Vec::with_capacity(BATCH);
    let mut closing = false;
    let mut kept = Kept::default();
    loop {
        let received = {
            let mut rx = rx.lock().await;
            if rx.is_empty() {
                // Nothing waits: give the connection back to the pool for
                // the node's other work rather than hold it while idle.
                kept.0 = None;
            }
            let mut rounds = Rounds::new(&mut rx, &mut stop);
            rounds.closing = closing;
            let received = rounds.next(&mut jobs, BATCH).await;
            closing = rounds.closing;
            received
        };
        if received == 0 {
            return;
        }
        let (messages, replies): (Vec<NewMessage>, Vec<Reply>) = jobs.drain(..).unzip();
        write_batch(&db, &mut kept, &deliver, messages, replies).await;
    }
}

async fn write_batch(
    db: &DbPool,
    kept: &mut Kept,
    deliver: &Deliver,
    messages: Vec<NewMessage>,
    replies: Vec<Reply>,
) {
    match send_all(db, kept, &messages).await {
        Ok(sent) => {
            for (reply, sent) in replies.into_iter().zip(sent) {
                let _ = reply.send(deliver.committed(sent));
            }
        }
        Err(error) if error.is_unavailable() || messages.len() == 1 => {
            let refusal = refusal(&error, messages.len());
            for reply in replies {
                let _ = reply.send(Err(refusal()));
            }
        }
        Err(error) => {
            tracing::warn!(%error, messages = messages.len(), "chat batch failed, writing its messages one by one");
            for (message, reply) in messages.into_iter().zip(replies) {
                let result = match send_all(db, kept, std::slice::from_ref(&message)).await {
                    Ok(mut sent) => sent
                        .pop()
                        .ok_or(ChatError::Internal)
                        .and_then(|sent| deliver.committed(sent)),
                    Err(error) => Err(refusal(&error, 1)()),
                };
                let _ = reply.send(result);
            }
        }
    }
}

impl Deliver {
    /// Publishes a message just stored to its members and queues its
    /// offline notices; the sender's answer.
    fn committed(&self, sent: Sent) -> Result<(WireMessage, bool), ChatError> {
        match sent {
            Sent::Stored { message, members } => {
                let message = wire::message(message);
                let frame = ChatFrame::Message { message: &message }.to_frame();
                self.fanout
                    .publish(members.iter().map(String::as_str), &frame);
                if let Some(offline) = &self.offline {
                    offline.queue(&message, members);
                }
                Ok((message, true))
            }
            Sent::Duplicate(message) => Ok((wire::message(message), false)),
            Sent::NotMember => Err(ChatError::NotFound),
        }
    }
}

/// Attempts at one transaction that InnoDB rolls back for a lock conflict.
const ATTEMPTS: u32 = 3;
/// How long a writer may keep an unused connection.
const KEEP_IDLE: Duration = Duration::from_secs(5);

/// The connection a writer keeps from one batch to the next while
/// messages keep queueing, so a batch pays no pool check (a round trip),
/// with when it was last used: one kept too long is given back rather
/// than trusted (MySQL may have restarted meanwhile).
#[derive(Default)]
struct Kept(Option<(DbConn, Instant)>);

impl Kept {
    async fn take(&mut self, db: &DbPool) -> Result<DbConn, StoreError> {
        match self.0.take() {
            Some((conn, used)) if used.elapsed() < KEEP_IDLE => Ok(conn),
            _ => notify_store::pool::get(db).await,
        }
    }
}

async fn send_all(
    db: &DbPool,
    kept: &mut Kept,
    messages: &[NewMessage],
) -> Result<Vec<Sent>, StoreError> {
    let mut attempt = 1;
    loop {
        let mut conn = kept.take(db).await?;
        let result = Message::send_all(&mut conn, messages).await;
        // A connection that failed goes back to the pool, which checks it.
        if result.is_ok() {
            kept.0 = Some((conn, Instant::now()));
        }
        match result {
            Err(error) if error.is_lock_conflict() && attempt < ATTEMPTS => attempt += 1,
            result => return result,
        }
    }
}

/// Logs a failed write once and gives the error each of its senders gets.
fn refusal(error: &StoreError, messages: usize) -> impl Fn() -> ChatError {
    let unavailable = error.is_unavailable();
    if unavailable {
        tracing::warn!(%error, messages, "chat messages not stored: MySQL unavailable");
    } else {
        tracing::error!(%error, messages, "chat messages not stored");
    }
    move || {
        if unavailable {
            ChatError::Unavailable
        } else {
            ChatError::Internal
        }
    }
}
