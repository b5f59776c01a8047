//! One WebSocket connection's task: authenticate (if the upgrade carried no
//! token), register with the node, greet, then serve until either side
//! ends it.
//!
//! The task is the only one that writes to its socket. It sleeps until its
//! outbox changes, a client frame arrives or the heartbeat ticks; everything
//! that needs MySQL runs in a boxed future so an idle connection's task stays
//! small.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_ws::{
    AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, ProtocolError, Session,
};
use chrono::{NaiveDateTime, TimeDelta};
use governor::DefaultKeyedRateLimiter;
use notify_auth::{AuthError, Claims, JwtVerifier};
use notify_bus::{revocation, Publisher, RedisPool};
use notify_protocol::{ChannelNames, Event};
use notify_service::refusals::Counters;
use notify_store::{DbPool, Notification};
use tokio::sync::Semaphore;

use crate::acks::Acks;
use crate::budget::FrameBudget;
use crate::config::Limits;
use crate::frames::{self, ClientFrame, FrameError};
use crate::outbox::{CloseSignal, Next, Outbox};
use crate::registry::{Registration, Registry};
use crate::seen::Seen;
use crate::subscriber::SubscriberStatus;

/// Longest wait for the user's channel to be subscribed before greeting; if
/// Redis is slow or away the connection proceeds, and catches up from
/// MySQL once the subscription is confirmed.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(3);
/// First wait before a failed catch-up is tried again; it doubles per
/// failure.
const CATCHUP_RETRY: Duration = Duration::from_secs(1);
/// Failed tries of a catch-up before the client is told to resume later.
const CATCHUP_ATTEMPTS: u32 = 6;
/// Longest wait to hand a close frame to a client.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Most notifications sent in one resume or resync batch; older ones are
/// paged through the api.
pub const RESUME_LIMIT: i64 = 500;

/// Everything the connections of one node share.
pub struct Node {
    pub id: String,
    pub registry: Arc<Registry>,
    pub jwt: JwtVerifier,
    pub db: DbPool,
    /// Pooled connections for revocation checks (never the subscriber's).
    pub redis: RedisPool,
    pub publisher: Publisher,
    pub channels: ChannelNames,
    pub limits: Limits,
    pub allowed_origins: Option<Vec<String>>,
    pub subscriber: Arc<SubscriberStatus>,
    /// Set on shutdown: new upgrades are refused and `/ready` fails.
    pub draining: AtomicBool,
    pub acks: Acks,
    /// Bounds concurrent MySQL backfills, so 10,000 connections resyncing
    /// after a Redis restart queue up instead of stampeding MySQL.
    pub backfills: Semaphore,
    /// How long an event may trail its row's `created_at`; catch-ups reach
    /// back this far.
    pub publish_lag: TimeDelta,
    /// Sockets open on this node, authenticated or not.
    pub open: AtomicUsize,
    /// New connections per client address.
    pub connects: DefaultKeyedRateLimiter<IpAddr>,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpAddr>,
    /// Refused upgrades and frames by error code, for `/metrics` and the
    /// stats log.
    pub refusals: Arc<Counters>,
    /// Connections the node closed, by close reason.
    pub closes: Counters,
}

/// Counts a socket as open on the node for as long as it lives.
pub struct OpenSocket(Arc<Node>);

impl OpenSocket {
    pub fn new(node: Arc<Node>) -> Self {
        node.open.fetch_add(1, Ordering::Relaxed);
        Self(node)
    }
}

impl Drop for OpenSocket {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why a token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Expired,
    Invalid,
    Revoked,
}

impl Refusal {
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Expired => "token expired",
            Refusal::Invalid => "invalid token",
            Refusal::Revoked => "token revoked",
        }
    }
}

impl Node {
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Verifies a token and checks that it was not revoked.
    pub async fn authorize(&self, token: &str) -> Result<Claims, Refusal> {
        let claims = self.jwt.verify(token).await.map_err(|e| match e {
            AuthError::Expired => Refusal::Expired,
            AuthError::Invalid => Refusal::Invalid,
        })?;
        self.check_revoked(&claims.sub, claims.jti.as_deref(), claims.iat)
            .await?;
        Ok(claims)
    }

    /// Redis being away does not lock everyone out: the token's signature
    /// and expiry were checked, and no revocation can be recorded meanwhile.
    async fn check_revoked(
        &self,
        user: &str,
        jti: Option<&str>,
        iat: Option<u64>,
    ) -> Result<(), Refusal> {
        match revocation::check(&self.redis, &self.channels, user, jti, iat).await {
            Ok(None) => Ok(()),
            Ok(Some(_)) => Err(Refusal::Revoked),
            Err(error) => {
                tracing::warn!(%error, "could not check token revocations");
                Ok(())
            }
        }
    }
}

/// What a connection catches up on.
#[derive(Clone, Copy)]
enum Catchup {
    /// The client has everything up to this id (resume).
    After(u64),
    /// The bus was lost: everything created since then.
    Since(NaiveDateTime),
}

/// What a connection remembers of what it sent, created on first use.
type Sent = Option<Box<Seen>>;

/// What the serving loop carries besides its timers.
struct State {
    sent: Sent,
    budget: FrameBudget,
    /// Catch-ups that failed and wait for another try (boxed: rare, and
    /// every idle connection would carry it otherwise).
    retry: Option<Box<Retry>>,
}

/// Failed catch-ups, merged: the widest of each kind is what is owed.
struct Retry {
    after: Option<u64>,
    since: Option<NaiveDateTime>,
    attempts: u32,
    at: tokio::time::Instant,
}

impl Retry {
    fn new() -> Self {
        Retry {
            after: None,
            since: None,
            attempts: 0,
            at: tokio::time::Instant::now(),
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
        self.at = tokio::time::Instant::now() + wait;
    }
}

/// The answer to a client frame.
enum Reply {
    Nothing,
    Text(String),
    Refused(FrameError),
    Resume(u64),
    /// A valid newer token for the same user arrived.
    Refreshed(Token),
}

/// What a connection keeps of the token it runs on.
struct Token {
    /// `exp` (Unix seconds): the connection closes then.
    expires: u64,
    /// `iat` and `jti`, to check again for revocations missed while the
    /// bus was away.
    issued: Option<u64>,
    id: Option<Box<str>>,
}

impl From<Claims> for Token {
    fn from(claims: Claims) -> Self {
        Token {
            expires: claims.exp,
            issued: claims.iat,
            id: claims.jti.map(String::into_boxed_str),
        }
    }
}

/// Whose connection it is.
struct Who<'a> {
    user: &'a str,
    /// When it was registered: a resync never reaches back before this.
    connected_at: NaiveDateTime,
    token: Token,
    registration: &'a Registration,
}

/// Why the serving loop ended.
enum End {
    /// The client went away or closed; nothing more to send.
    Gone,
    Close(CloseCode, &'static str),
}

pub async fn run(
    open: OpenSocket,
    mut session: Session,
    mut stream: AggregatedMessageStream,
    claims: Option<Claims>,
    after: Option<u64>,
) {
    let node = open.0.clone();
    // One budget from the upgrade on: frames sent before authenticating
    // count too.
    let mut budget = FrameBudget::new();
    let mut claims = match claims {
        Some(claims) => claims,
        None => match Box::pin(authenticate(&node, &mut session, &mut stream, &mut budget)).await {
            Ok(claims) => claims,
            Err(End::Gone) => return,
            Err(End::Close(code, reason)) => return close(&node, session, code, reason).await,
        },
    };
    let user = std::mem::take(&mut claims.sub);
    if node.registry.user_connections(&user) >= node.limits.max_connections_per_user {
        return close(
            &node,
            session,
            CloseCode::Policy,
            "too many connections for this user",
        )
        .await;
    }
    let connected_at = notify_store::now();
    let outbox = Arc::new(Outbox::default());
    let registration =
        node.registry
            .register(&user, outbox.clone(), claims.jti.as_deref(), claims.iat);
    let _ = tokio::time::timeout(SUBSCRIBE_WAIT, async {
        while !outbox.is_subscribed() {
            outbox.changed().await;
        }
    })
    .await;
    // Every event after `welcome` must arrive: if the subscription is still
    // unconfirmed, what the live path misses until it is comes from MySQL.
    outbox.resync_once_subscribed(connected_at);
    let who = Who {
        user: &user,
        connected_at,
        token: Token::from(claims),
        registration: &registration,
    };
    let greeting = Box::pin(greeting(&node, &who)).await;
    if let Err(end) = write(&node, session.text(greeting)).await {
        return finish(&node, session, end).await;
    }
    // Subscribed before reading MySQL: anything committed after the read is
    // already queued live, and `sent` drops what both paths deliver.
    let mut state = State {
        sent: None,
        budget,
        retry: None,
    };
    if let Some(after) = after {
        let catchup = Catchup::After(after);
        if let Err(end) = Box::pin(catch_up(&node, &who, catchup, &mut state, &mut session)).await {
            return finish(&node, session, end).await;
        }
    }
    let end = serve(&node, who, &outbox, &mut session, &mut stream, &mut state).await;
    finish(&node, session, end).await
}

async fn finish(node: &Node, session: Session, end: End) {
    if let End::Close(code, reason) = end {
        close(node, session, code, reason).await;
    }
}

/// Writes to the socket, waiting at most the send timeout: a client that
/// stops reading must not hold up its own connection's task (heartbeat,
/// token expiry, revocation) when no proxy is in front.
async fn write(
    node: &Node,
    write: impl std::future::Future<Output = Result<(), actix_ws::Closed>>,
) -> Result<(), End> {
    match tokio::time::timeout(node.limits.send_timeout, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(End::Gone),
        Err(_) => Err(End::Close(CloseCode::Again, "too slow: send timed out")),
    }
}

async fn greeting(node: &Node, who: &Who<'_>) -> String {
    let unread_count = {
        let _turn = who.registration.db_turn().await;
        match notify_store::pool::get(&node.db).await {
            Ok(mut conn) => Notification::unread_count(&mut conn, who.user).await.ok(),
            Err(_) => None,
        }
    };
    let session_id = format!("{:032x}", rand::random::<u128>());
    tracing::debug!(%session_id, "connection authenticated");
    frames::welcome(
        &session_id,
        &node.id,
        node.limits.heartbeat.as_secs(),
        unread_count,
    )
}

async fn authenticate(
    node: &Node,
    session: &mut Session,
    stream: &mut AggregatedMessageStream,
    budget: &mut FrameBudget,
) -> Result<Claims, End> {
    let limits = &node.limits;
    let deadline = tokio::time::sleep(node.limits.auth_timeout);
    tokio::pin!(deadline);
    loop {
        let message = tokio::select! {
            _ = &mut deadline => return Err(End::Close(CloseCode::Policy, "authentication timeout")),
            message = stream.recv() => message,
        };
        match message {
            Some(Ok(AggregatedMessage::Text(text))) => {
                return match ClientFrame::parse(&text) {
                    Ok(ClientFrame::Auth { token }) => match node.authorize(&token).await {
                        Ok(claims) => Ok(claims),
                        Err(refusal) => Err(End::Close(CloseCode::Policy, refusal.message())),
                    },
                    _ => Err(End::Close(CloseCode::Policy, "authentication required")),
                };
            }
            Some(Ok(AggregatedMessage::Close(_))) | None => return Err(End::Gone),
            // Nobody is known yet: no warning, the first excess closes.
            Some(Ok(AggregatedMessage::Ping(_) | AggregatedMessage::Pong(_)))
                if !budget.allow(limits.frame_rate, limits.frame_burst) =>
            {
                return Err(End::Close(CloseCode::Policy, "too many frames"));
            }
            Some(Ok(AggregatedMessage::Ping(bytes))) => write(node, session.pong(&bytes)).await?,
            Some(Ok(AggregatedMessage::Pong(_))) => {}
            Some(Ok(AggregatedMessage::Binary(_))) => {
                return Err(End::Close(CloseCode::Policy, "authentication required"))
            }
            Some(Err(error)) => return Err(protocol_end(&error)),
        }
    }
}

async fn serve(
    node: &Node,
    who: Who<'_>,
    outbox: &Outbox,
    session: &mut Session,
    stream: &mut AggregatedMessageStream,
    state: &mut State,
) -> End {
    let limits = &node.limits;
    let mut token_expiry = who.token.expires;
    let mut last_heard = Instant::now();
    let mut invalid_frames = 0u32;
    // The connection does not outlive its token, unless the client sends a
    // newer one in a `refresh` frame.
    let expiry = tokio::time::sleep_until(deadline(token_expiry, node));
    tokio::pin!(expiry);
    let mut over_budget = 0u32;
    let mut heartbeat = tokio::time::interval(limits.heartbeat);
    heartbeat.reset();
    let mut who = who;
    loop {
        // Flush first: a change may have been signalled while this task was
        // busy elsewhere.
        if let Err(end) = flush(node, &who, outbox, session, state).await {
            return end;
        }
        let retry_at = state.retry.as_ref().map(|r| r.at);
        tokio::select! {
            _ = outbox.changed() => {}
            _ = sleep_until_some(retry_at) => {
                if let Some(retry) = state.retry.take() {
                    if let Err(end) = Box::pin(retry_catch_up(node, &who, *retry, state, session)).await {
                        return end;
                    }
                }
            }
            message = stream.recv() => {
                last_heard = Instant::now();
                let message = match message {
                    None => return End::Gone,
                    Some(Err(error)) => return protocol_end(&error),
                    Some(Ok(message)) => message,
                };
                if let AggregatedMessage::Close(reason) = message {
                    // Echo the close so the client's handshake completes.
                    let _ = tokio::time::timeout(CLOSE_TIMEOUT, session.clone().close(reason)).await;
                    return End::Gone;
                }
                // Every frame spends the budget, protocol pings included.
                if !spend(&mut state.budget, &mut over_budget, limits) {
                    if over_budget > limits.frame_burst {
                        return End::Close(CloseCode::Policy, "too many frames");
                    }
                    if over_budget == 1 {
                        node.refusals.add("rate_limited");
                        let frame = frames::error("rate_limited", "too many frames, slow down");
                        if let Err(end) = write(node, session.text(frame)).await {
                            return end;
                        }
                    }
                    continue;
                }
                let reply = match message {
                    AggregatedMessage::Ping(bytes) => {
                        if let Err(end) = write(node, session.pong(&bytes)).await {
                            return end;
                        }
                        continue;
                    }
                    AggregatedMessage::Pong(_) | AggregatedMessage::Close(_) => continue,
                    AggregatedMessage::Binary(_) => Reply::Refused(FrameError::Binary),
                    AggregatedMessage::Text(text) => match ClientFrame::parse(&text) {
                        Ok(frame) => Box::pin(handle(node, &who, frame)).await,
                        Err(error) => Reply::Refused(error),
                    },
                };
                let text = match reply {
                    Reply::Nothing => continue,
                    Reply::Resume(after) => {
                        let catchup = Catchup::After(after);
                        if let Err(end) = Box::pin(catch_up(node, &who, catchup, state, session)).await {
                            return end;
                        }
                        continue;
                    }
                    Reply::Refreshed(newer) => {
                        token_expiry = newer.expires;
                        expiry.as_mut().reset(deadline(token_expiry, node));
                        who.registration.set_token(newer.id.as_deref());
                        who.token = newer;
                        frames::refreshed(token_expiry)
                    }
                    Reply::Text(text) => text,
                    Reply::Refused(error) => {
                        invalid_frames += 1;
                        if invalid_frames > limits.max_invalid_frames {
                            return End::Close(CloseCode::Policy, "too many invalid frames");
                        }
                        node.refusals.add(error.code());
                        frames::error(error.code(), &error.to_string())
                    }
                };
                if let Err(end) = write(node, session.text(text)).await {
                    return end;
                }
            }
            _ = &mut expiry => return End::Close(CloseCode::Policy, "token expired"),
            _ = heartbeat.tick() => {
                if last_heard.elapsed() >= limits.heartbeat * 2 {
                    return End::Close(CloseCode::Away, "heartbeat timeout");
                }
                // An idle connection gives back what it remembered sending.
                if state.sent.as_mut().is_some_and(|sent| sent.prune(Instant::now())) {
                    state.sent = None;
                }
                if let Err(end) = write(node, session.ping(b"")).await {
                    return end;
                }
            }
        }
    }
}

/// Sends what the outbox holds and acts on its signals, until it is idle.
async fn flush(
    node: &Node,
    who: &Who<'_>,
    outbox: &Outbox,
    session: &mut Session,
    state: &mut State,
) -> Result<(), End> {
    loop {
        match outbox.next() {
            Next::Send(frame) => {
                if let Some(id) = frames::notification_id(&frame) {
                    if !state.sent.get_or_insert_with(Box::default).first_time(id) {
                        continue;
                    }
                }
                write(node, session.text(frame)).await?;
            }
            Next::Close(CloseSignal::Stalled) => {
                return Err(End::Close(CloseCode::Again, "too slow: send queue full"))
            }
            Next::Close(CloseSignal::Restart) => {
                return Err(End::Close(
                    CloseCode::Restart,
                    "server restarting, reconnect",
                ))
            }
            Next::Close(CloseSignal::Revoked) => {
                return Err(End::Close(CloseCode::Policy, Refusal::Revoked.message()))
            }
            Next::Resync(since) => {
                // A revocation may have been announced while the bus was
                // away.
                let token = &who.token;
                let check = node.check_revoked(who.user, token.id.as_deref(), token.issued);
                if Box::pin(check).await == Err(Refusal::Revoked) {
                    return Err(End::Close(CloseCode::Policy, Refusal::Revoked.message()));
                }
                let catchup = Catchup::Since(since.max(who.connected_at));
                Box::pin(catch_up(node, who, catchup, state, session)).await?;
            }
            Next::Idle => return Ok(()),
        }
    }
}

/// Resolves at `at`, or never.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// When a token expiring at `exp` (Unix seconds) stops being accepted: the
/// same leeway as at connect, so a token is never accepted at the upgrade
/// and then closed at once.
fn deadline(exp: u64, node: &Node) -> tokio::time::Instant {
    let until = exp.saturating_add(node.jwt.leeway().as_secs());
    tokio::time::Instant::now() + Duration::from_secs(until.saturating_sub(notify_auth::unix_now()))
}

/// Spends one inbound frame from the connection's budget, counting the
/// excess frames in a row; false when over budget.
fn spend(budget: &mut FrameBudget, over: &mut u32, limits: &Limits) -> bool {
    if budget.allow(limits.frame_rate, limits.frame_burst) {
        *over = 0;
        true
    } else {
        *over += 1;
        false
    }
}

/// Acts on a valid client frame.
async fn handle(node: &Node, who: &Who<'_>, frame: ClientFrame) -> Reply {
    let user = who.user;
    match frame {
        ClientFrame::Ping => Reply::Text(frames::pong().to_owned()),
        ClientFrame::Auth { .. } => {
            Reply::Refused(FrameError::Invalid("already authenticated".into()))
        }
        ClientFrame::Resume { after } => Reply::Resume(after),
        ClientFrame::Refresh { token } => match node.authorize(&token).await {
            Ok(claims) if claims.sub == user => Reply::Refreshed(Token::from(claims)),
            Ok(_) => Reply::Refused(FrameError::Invalid("the token is for another user".into())),
            Err(refusal) => Reply::Refused(FrameError::Invalid(refusal.message().into())),
        },
        ClientFrame::Ack { ids } => {
            if node.acks.record(user, ids) {
                Reply::Nothing
            } else {
                Reply::Text(frames::error(
                    "unavailable",
                    "acks are not being recorded right now, send them again later",
                ))
            }
        }
        ClientFrame::Read { ids } => {
            let changed = {
                let _turn = who.registration.db_turn().await;
                match notify_store::pool::get(&node.db).await {
                    Ok(mut conn) => {
                        Notification::mark_read(&mut conn, user, &ids, notify_store::now()).await
                    }
                    Err(e) => Err(e),
                }
            };
            match changed {
                Ok(ids) if ids.is_empty() => Reply::Nothing,
                Ok(ids) => {
                    publish(&node.publisher, &node.channels, user, &Event::Read { ids });
                    Reply::Nothing
                }
                Err(error) => Reply::Text(storage_error(&error)),
            }
        }
        ClientFrame::ReadAll => {
            let result = {
                let _turn = who.registration.db_turn().await;
                match notify_store::pool::get(&node.db).await {
                    Ok(mut conn) => {
                        Notification::mark_all_read(&mut conn, user, notify_store::now()).await
                    }
                    Err(e) => Err(e),
                }
            };
            match result {
                Ok((updated, Some(up_to))) if updated > 0 => {
                    publish(
                        &node.publisher,
                        &node.channels,
                        user,
                        &Event::ReadAll { up_to },
                    );
                    Reply::Nothing
                }
                Ok(_) => Reply::Nothing,
                Err(error) => Reply::Text(storage_error(&error)),
            }
        }
    }
}

/// Catches up, or, when MySQL cannot be read now (pool busy, MySQL away),
/// schedules another try.
async fn catch_up(
    node: &Node,
    who: &Who<'_>,
    catchup: Catchup,
    state: &mut State,
    session: &mut Session,
) -> Result<(), End> {
    match backfill(node, who, catchup, &mut state.sent, session).await? {
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

async fn retry_catch_up(
    node: &Node,
    who: &Who<'_>,
    mut retry: Retry,
    state: &mut State,
    session: &mut Session,
) -> Result<(), End> {
    for catchup in retry.catchups() {
        if let Err(error) = backfill(node, who, catchup, &mut state.sent, session).await? {
            if retry.attempts + 1 >= CATCHUP_ATTEMPTS {
                tracing::warn!(%error, "could not read missed notifications, giving up");
                let frame = frames::error(
                    "unavailable",
                    "could not read missed notifications; resume again later",
                );
                return write(node, session.text(frame)).await;
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
    session: &mut Session,
) -> Result<Result<(), notify_store::StoreError>, End> {
    let missed = {
        let _turn = who.registration.db_turn().await;
        let _permit = node.backfills.acquire().await;
        read_missed(&node.db, who.user, catchup, node.publish_lag).await
    };
    let (rows, truncated) = match missed {
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
        write(node, session.text(frame)).await?;
        count += 1;
    }
    write(
        node,
        session.text(frames::resumed(count, truncated, oldest)),
    )
    .await?;
    Ok(Ok(()))
}

async fn read_missed(
    db: &DbPool,
    user: &str,
    catchup: Catchup,
    publish_lag: TimeDelta,
) -> Result<(Vec<Notification>, bool), notify_store::StoreError> {
    let mut conn = notify_store::pool::get(db).await?;
    let (after, since) = match catchup {
        // Ids can commit out of order across api nodes: also resend what was
        // created shortly before the client's last one (it dedupes by id).
        Catchup::After(after) => {
            let created = Notification::created_at(&mut conn, user, after).await?;
            (Some(after), created.map(|at| at - publish_lag))
        }
        Catchup::Since(since) => (None, Some(since)),
    };
    Notification::missed(&mut conn, user, after, since, RESUME_LIMIT).await
}

fn publish(publisher: &Publisher, channels: &ChannelNames, user: &str, event: &Event) {
    publisher.publish(channels.user(user), event.to_frame());
}

fn storage_error(error: &notify_store::StoreError) -> String {
    tracing::warn!(%error, "could not store a read mark");
    frames::error("unavailable", "could not save the change, retry later")
}

fn protocol_end(error: &ProtocolError) -> End {
    match error {
        ProtocolError::Overflow => End::Close(CloseCode::Size, "frame too large"),
        _ => End::Close(CloseCode::Protocol, "protocol error"),
    }
}

async fn close(node: &Node, session: Session, code: CloseCode, reason: &'static str) {
    node.closes.add(reason);
    let reason = CloseReason {
        code,
        description: Some(reason.to_owned()),
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, session.close(Some(reason))).await;
}
