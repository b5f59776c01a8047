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
use chrono::NaiveDateTime;
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
use crate::subscriber::{SubscriberStatus, PUBLISH_LAG};

/// Longest wait for the user's channel to be subscribed before greeting; if
/// Redis is away the connection proceeds and is resynced when it returns.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(3);
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
    let mut claims = match claims {
        Some(claims) => claims,
        None => match Box::pin(authenticate(&node, &mut session, &mut stream)).await {
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
    let greeting = Box::pin(greeting(&node, &user)).await;
    if session.text(greeting).await.is_err() {
        return;
    }
    // Subscribed before reading MySQL: anything committed after the read is
    // already queued live, and `sent` drops what both paths deliver.
    let mut sent: Sent = None;
    if let Some(after) = after {
        if let Err(end) = Box::pin(backfill(
            &node,
            &user,
            Catchup::After(after),
            &mut sent,
            &mut session,
        ))
        .await
        {
            if let End::Close(code, reason) = end {
                close(&node, session, code, reason).await;
            }
            return;
        }
    }
    let who = Who {
        user: &user,
        connected_at,
        token: Token::from(claims),
        registration: &registration,
    };
    match serve(&node, who, &outbox, &mut session, &mut stream, &mut sent).await {
        End::Gone => {}
        End::Close(code, reason) => close(&node, session, code, reason).await,
    }
}

async fn greeting(node: &Node, user: &str) -> String {
    let unread_count = match notify_store::pool::get(&node.db).await {
        Ok(mut conn) => Notification::unread_count(&mut conn, user).await.ok(),
        Err(_) => None,
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
) -> Result<Claims, End> {
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
            Some(Ok(AggregatedMessage::Ping(bytes))) => {
                if session.pong(&bytes).await.is_err() {
                    return Err(End::Gone);
                }
            }
            Some(Ok(AggregatedMessage::Pong(_))) => {}
            Some(Ok(AggregatedMessage::Close(_))) | None => return Err(End::Gone),
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
    sent: &mut Sent,
) -> End {
    let Who {
        user,
        connected_at,
        mut token,
        registration,
    } = who;
    let limits = &node.limits;
    let mut last_heard = Instant::now();
    let mut invalid_frames = 0u32;
    let mut budget = FrameBudget::new();
    // The connection does not outlive its token, unless the client sends a
    // newer one in a `refresh` frame.
    let expiry = tokio::time::sleep_until(deadline(token.expires));
    tokio::pin!(expiry);
    let mut over_budget = 0u32;
    let mut heartbeat = tokio::time::interval(limits.heartbeat);
    heartbeat.reset();
    loop {
        // Flush first: a change may have been signalled while this task was
        // busy elsewhere.
        loop {
            match outbox.next() {
                Next::Send(frame) => {
                    if let Some(id) = frames::notification_id(&frame) {
                        if !sent.get_or_insert_with(Box::default).first_time(id) {
                            continue;
                        }
                    }
                    match tokio::time::timeout(limits.send_timeout, session.text(frame)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => return End::Gone,
                        Err(_) => return End::Close(CloseCode::Again, "too slow: send timed out"),
                    }
                }
                Next::Close(CloseSignal::Stalled) => {
                    return End::Close(CloseCode::Again, "too slow: send queue full")
                }
                Next::Close(CloseSignal::Restart) => {
                    return End::Close(CloseCode::Restart, "server restarting, reconnect")
                }
                Next::Close(CloseSignal::Revoked) => {
                    return End::Close(CloseCode::Policy, Refusal::Revoked.message())
                }
                Next::Resync(since) => {
                    // A revocation may have been announced while the bus
                    // was away.
                    let check = node.check_revoked(user, token.id.as_deref(), token.issued);
                    if Box::pin(check).await == Err(Refusal::Revoked) {
                        return End::Close(CloseCode::Policy, Refusal::Revoked.message());
                    }
                    let since = Catchup::Since(since.max(connected_at));
                    if let Err(end) = Box::pin(backfill(node, user, since, sent, session)).await {
                        return end;
                    }
                }
                Next::Idle => break,
            }
        }
        tokio::select! {
            _ = outbox.changed() => {}
            message = stream.recv() => {
                last_heard = Instant::now();
                let reply = match message {
                    None => return End::Gone,
                    Some(Err(error)) => return protocol_end(&error),
                    Some(Ok(AggregatedMessage::Close(reason))) => {
                        // Echo the close so the client's handshake completes.
                        let _ = tokio::time::timeout(CLOSE_TIMEOUT, session.clone().close(reason)).await;
                        return End::Gone;
                    }
                    Some(Ok(AggregatedMessage::Ping(bytes))) => {
                        if session.pong(&bytes).await.is_err() {
                            return End::Gone;
                        }
                        None
                    }
                    Some(Ok(AggregatedMessage::Pong(_))) => None,
                    Some(Ok(AggregatedMessage::Binary(_) | AggregatedMessage::Text(_)))
                        if !spend(&mut budget, &mut over_budget, limits) =>
                    {
                        if over_budget > limits.frame_burst {
                            return End::Close(CloseCode::Policy, "too many frames");
                        }
                        (over_budget == 1).then(|| {
                            node.refusals.add("rate_limited");
                            Reply::Text(frames::error("rate_limited", "too many frames, slow down"))
                        })
                    }
                    Some(Ok(AggregatedMessage::Binary(_))) => Some(Reply::Refused(FrameError::Binary)),
                    Some(Ok(AggregatedMessage::Text(text))) => match ClientFrame::parse(&text) {
                        Ok(frame) => Some(Box::pin(handle(node, user, frame)).await),
                        Err(error) => Some(Reply::Refused(error)),
                    },
                };
                let text = match reply {
                    None | Some(Reply::Nothing) => continue,
                    Some(Reply::Resume(after)) => {
                        if let Err(end) = Box::pin(backfill(node, user, Catchup::After(after), sent, session)).await {
                            return end;
                        }
                        continue;
                    }
                    Some(Reply::Refreshed(newer)) => {
                        expiry.as_mut().reset(deadline(newer.expires));
                        registration.set_token(newer.id.as_deref());
                        let frame = frames::refreshed(newer.expires);
                        token = newer;
                        frame
                    }
                    Some(Reply::Text(text)) => text,
                    Some(Reply::Refused(error)) => {
                        invalid_frames += 1;
                        if invalid_frames > limits.max_invalid_frames {
                            return End::Close(CloseCode::Policy, "too many invalid frames");
                        }
                        node.refusals.add(error.code());
                        frames::error(error.code(), &error.to_string())
                    }
                };
                if session.text(text).await.is_err() {
                    return End::Gone;
                }
            }
            _ = &mut expiry => return End::Close(CloseCode::Policy, "token expired"),
            _ = heartbeat.tick() => {
                if last_heard.elapsed() >= limits.heartbeat * 2 {
                    return End::Close(CloseCode::Away, "heartbeat timeout");
                }
                if session.ping(b"").await.is_err() {
                    return End::Gone;
                }
            }
        }
    }
}

/// When a token expiring at `exp` (Unix seconds) runs out.
fn deadline(exp: u64) -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(exp.saturating_sub(notify_auth::unix_now()))
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
async fn handle(node: &Node, user: &str, frame: ClientFrame) -> Reply {
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
            let changed = match notify_store::pool::get(&node.db).await {
                Ok(mut conn) => {
                    Notification::mark_read(&mut conn, user, &ids, notify_store::now()).await
                }
                Err(e) => Err(e),
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
            let result = match notify_store::pool::get(&node.db).await {
                Ok(mut conn) => {
                    Notification::mark_all_read(&mut conn, user, notify_store::now()).await
                }
                Err(e) => Err(e),
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

/// Sends, in id order, what the client may have missed, skipping what this
/// connection already sent, then a `resumed` frame.
async fn backfill(
    node: &Node,
    user: &str,
    catchup: Catchup,
    sent: &mut Sent,
    session: &mut Session,
) -> Result<(), End> {
    let missed = {
        let _permit = node.backfills.acquire().await;
        read_missed(&node.db, user, catchup).await
    };
    let (rows, truncated) = match missed {
        Ok(found) => found,
        Err(error) => {
            tracing::warn!(%error, "could not read missed notifications");
            let frame = frames::error(
                "unavailable",
                "could not read missed notifications; resume again later",
            );
            return session.text(frame).await.map_err(|_| End::Gone);
        }
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
        match tokio::time::timeout(node.limits.send_timeout, session.text(frame)).await {
            Ok(Ok(())) => count += 1,
            Ok(Err(_)) => return Err(End::Gone),
            Err(_) => return Err(End::Close(CloseCode::Again, "too slow: send timed out")),
        }
    }
    session
        .text(frames::resumed(count, truncated, oldest))
        .await
        .map_err(|_| End::Gone)
}

async fn read_missed(
    db: &DbPool,
    user: &str,
    catchup: Catchup,
) -> Result<(Vec<Notification>, bool), notify_store::StoreError> {
    let mut conn = notify_store::pool::get(db).await?;
    let (after, since) = match catchup {
        // Ids can commit out of order across api nodes: also resend what was
        // created shortly before the client's last one (it dedupes by id).
        Catchup::After(after) => {
            let created = Notification::created_at(&mut conn, user, after).await?;
            (Some(after), created.map(|at| at - PUBLISH_LAG))
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
