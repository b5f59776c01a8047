//! One WebSocket connection's task: authenticate (if the upgrade carried no
//! token), register with the node, greet, then serve until either side
//! ends it.
//!
//! The task is the only one that writes to its socket. It sleeps until its
//! queue changes, a client frame arrives or the heartbeat ticks; everything
//! that needs MySQL runs in a boxed future so an idle connection's task stays
//! small.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, Session};

use crate::journal::Attempt;
use chrono::NaiveDateTime;
use notify_auth::Claims;
use notify_protocol::frame::notification_id;
use notify_protocol::{ClientFrame, FrameError, ServerFrame};

use crate::budget::FrameBudget;
use crate::catchup::{catch_up, retry_catch_up, retry_due, Catchup, Retry};
use crate::config::Limits;
use crate::handshake::{authenticate, await_subscription, greeting};
use notify_bus::TokenRefusal;

use crate::node::{Node, OpenSocket};
use crate::registry::Registration;
use crate::requests::{handle, Reply, Token};
use crate::seen::Seen;
use crate::send_queue::{CloseSignal, Next, SendQueue};
use crate::socket::{protocol_end, Dialect, End, Socket};
use crate::socketio;
use crate::topic_requests::{self, Held};
use notify_protocol::socketio::NotificationEvent;

/// What a connection remembers of what it sent, created on first use.
pub(crate) type Sent = Option<Box<Seen>>;

/// What the serving loop carries besides its timers.
pub(crate) struct State {
    pub(crate) sent: Sent,
    budget: FrameBudget,
    /// Catch-ups that failed and wait for another try (boxed: rare, and
    /// every idle connection would carry it otherwise).
    pub(crate) retry: Option<Box<Retry>>,
    /// The topics it subscribes to, left when the state is dropped.
    topics: Held,
}

/// Whose connection it is.
pub(crate) struct Who<'a> {
    pub(crate) user: &'a str,
    /// When it was registered: a resync never reaches back before this.
    pub(crate) connected_at: NaiveDateTime,
    /// Its session id, in `welcome` and the connection log.
    pub(crate) session: crate::sessions::SessionId,
    pub(crate) token: Token,
    pub(crate) registration: &'a Registration,
}

/// How a connection authenticates, by the path it came on.
pub enum Admission {
    /// `/ws`: claims verified at the upgrade, or an `auth` frame to wait
    /// for; `after` from the query string.
    // Boxed: a future keeps its arguments for its whole life, and most of
    // this one's life is spent serving, long after the claims are used.
    Native {
        claims: Option<Box<Claims>>,
        after: Option<u64>,
    },
    /// `/socket.io/`: the token of the CONNECT packet's `auth`, or the one
    /// of the upgrade (checked at CONNECT, so a refusal reaches the client
    /// as a CONNECT_ERROR).
    SocketIo {
        upgrade_token: Option<Box<str>>,
        notification_event: NotificationEvent,
    },
}

pub async fn run(
    open: OpenSocket,
    session: Session,
    mut stream: AggregatedMessageStream,
    admission: Admission,
    mut attempt: Attempt,
) {
    let node = open.0.clone();
    let dialect = match &admission {
        Admission::Native { .. } => Dialect::Native,
        Admission::SocketIo {
            notification_event, ..
        } => Dialect::SocketIo(*notification_event),
    };
    let mut socket = Socket::new(session, dialect);
    // One budget from the upgrade on: frames sent before authenticating
    // count too.
    let mut budget = FrameBudget::new();
    // In a block: the claims are large and done with once registered, and
    // a task keeps room for every local still in scope at each await.
    let (user, token, queue, registration, after) = {
        let admitted = match admission {
            Admission::Native {
                claims: Some(claims),
                after,
            } => Ok((*claims, after)),
            Admission::Native {
                claims: None,
                after,
            } => Box::pin(authenticate(&node, &mut socket, &mut stream, &mut budget))
                .await
                .map(|claims| (claims, after)),
            Admission::SocketIo { upgrade_token, .. } => {
                let sid = attempt.session.to_string();
                let token = upgrade_token.map(String::from);
                Box::pin(socketio::handshake(
                    &node,
                    &mut socket,
                    &mut stream,
                    &mut budget,
                    token,
                    &sid,
                ))
                .await
            }
        };
        let (mut claims, after) = match admitted {
            Ok(admitted) => admitted,
            Err((code, end)) => {
                node.journal
                    .refused(&attempt, None, code, &end, Some(&socket));
                return socket.finish(&node, &end).await;
            }
        };
        let user = std::mem::take(&mut claims.sub);
        if node.registry.user_connections(&user) >= node.limits.max_connections_per_user {
            let end = End::Close(CloseCode::Policy, "too many connections for this user");
            let code = "too_many_connections";
            socket.refuse_connect(&node, code).await;
            node.journal
                .refused(&attempt, Some(&user), code, &end, Some(&socket));
            return socket.finish(&node, &end).await;
        }
        let queue = Arc::new(SendQueue::default());
        let registration = node.registry.register(
            &user,
            queue.clone(),
            claims.jti.as_deref(),
            claims.iat,
            &claims.roles,
            attempt.session,
        );
        (user, Token::from(claims), queue, registration, after)
    };
    let record = node.journal.opened(&mut attempt, &user);
    let mut who = Who {
        user: &user,
        connected_at: notify_store::now(),
        session: attempt.session,
        token,
        registration: &registration,
    };
    // From `welcome` to the end; every way out is recorded below.
    let end = 'established: {
        await_subscription(&queue, who.connected_at).await;
        let greeting = Box::pin(greeting(&node, &who)).await;
        if let Err(end) = socket.text(&node, greeting).await {
            break 'established end;
        }
        socket.connected = true;
        // Subscribed before reading MySQL: anything committed after the
        // read is already queued live, and `sent` drops what both paths
        // deliver.
        let mut state = State {
            sent: None,
            budget,
            retry: None,
            topics: None,
        };
        if let Some(after) = after {
            let catchup = Catchup::After(after);
            if let Err(end) =
                Box::pin(catch_up(&node, &who, catchup, &mut state, &mut socket)).await
            {
                break 'established end;
            }
        }
        serve(
            &node,
            &mut who,
            &queue,
            &mut socket,
            &mut stream,
            &mut state,
        )
        .await
    };
    record.closed(&end, &socket);
    socket.finish(&node, &end).await
}

async fn serve(
    node: &Node,
    who: &mut Who<'_>,
    queue: &Arc<SendQueue>,
    socket: &mut Socket,
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
    // A Socket.IO client's clock started at the open packet: its first
    // ping goes out now. A native client's (if any) at the next tick.
    if socket.dialect == Dialect::Native {
        heartbeat.reset();
    }
    loop {
        // Flush first: a change may have been signalled while this task was
        // busy elsewhere.
        if let Err(end) = flush(node, &*who, queue, socket, state).await {
            return end;
        }
        tokio::select! {
            _ = queue.changed() => {}
            _ = retry_due(&mut state.retry) => {
                if let Some(retry) = state.retry.take() {
                    if let Err(end) = Box::pin(retry_catch_up(node, &*who, *retry, state, socket)).await {
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
                socket.frames_in = socket.frames_in.saturating_add(1);
                if let AggregatedMessage::Close(reason) = message {
                    let code = reason.as_ref().map(|r| u16::from(r.code));
                    socket.echo_close(reason).await;
                    return End::Closed(code);
                }
                // Every frame spends the budget, protocol pings included.
                if !spend(&mut state.budget, &mut over_budget, limits) {
                    if over_budget > limits.frame_burst {
                        return End::Close(CloseCode::Policy, "too many frames");
                    }
                    if over_budget == 1 {
                        node.refusals.add("rate_limited");
                        let frame = ServerFrame::Error {
                            code: "rate_limited",
                            message: "too many frames, slow down",
                            topic: None,
                        }
                        .to_frame();
                        if let Err(end) = socket.text(node, frame).await {
                            return end;
                        }
                    }
                    continue;
                }
                let (parsed, ack) = match message {
                    AggregatedMessage::Ping(bytes) => {
                        if let Err(end) = socket.pong(node, &bytes).await {
                            return end;
                        }
                        continue;
                    }
                    AggregatedMessage::Pong(_) | AggregatedMessage::Close(_) => continue,
                    AggregatedMessage::Binary(_) => (Err(FrameError::Binary), None),
                    AggregatedMessage::Text(text) => match socket.dialect {
                        Dialect::Native => (ClientFrame::parse(&text), None),
                        Dialect::SocketIo(_) => match socketio::read(&text) {
                            socketio::Read::Frame(parsed, ack) => (parsed, ack),
                            socketio::Read::Answer(packet) => {
                                if let Err(end) = socket.packet(node, packet).await {
                                    return end;
                                }
                                continue;
                            }
                            socketio::Read::Nothing => continue,
                            socketio::Read::Connect => {
                                let packet = notify_protocol::socketio::connected(&who.session.to_string());
                                if let Err(end) = socket.packet(node, packet).await {
                                    return end;
                                }
                                continue;
                            }
                            socketio::Read::End(end) => return end,
                        },
                    },
                };
                let reply = match parsed {
                    Ok(ClientFrame::Topic(request)) => {
                        Box::pin(topic_requests::handle(node, &*who, queue, &mut state.topics, request)).await
                    }
                    Ok(frame) => Box::pin(handle(node, &*who, frame)).await,
                    Err(error) => Reply::Refused(error),
                };
                let text = match reply {
                    Reply::Nothing => None,
                    Reply::Resume(after) => {
                        let catchup = Catchup::After(after);
                        if let Err(end) = Box::pin(catch_up(node, &*who, catchup, state, socket)).await {
                            return end;
                        }
                        None
                    }
                    Reply::Refreshed(newer) => {
                        token_expiry = newer.expires;
                        expiry.as_mut().reset(deadline(token_expiry, node));
                        who.registration.set_token(newer.id.as_deref(), &newer.roles);
                        let roles_changed = who.token.roles != newer.roles;
                        who.token = newer;
                        if roles_changed {
                            // Topics the new roles do not allow are left.
                            for topic in topic_requests::recheck(node, who, &mut state.topics) {
                                let frame = ServerFrame::Unsubscribed { topic: &topic }.to_frame();
                                if let Err(end) = socket.text(node, frame).await {
                                    return end;
                                }
                            }
                        }
                        Some(ServerFrame::Refreshed { expires_at: token_expiry }.to_frame())
                    }
                    Reply::Text(text) => Some(text),
                    // An event a Socket.IO server would ignore for want of
                    // a listener is refused in its ack, not held against
                    // the connection.
                    Reply::Refused(FrameError::UnknownType) if socket.dialect != Dialect::Native => {
                        node.refusals.add(FrameError::UnknownType.code());
                        Some(ServerFrame::Error {
                            code: FrameError::UnknownType.code(),
                            message: &FrameError::UnknownType.to_string(),
                            topic: None,
                        }
                        .to_frame())
                    }
                    Reply::Refused(error) => {
                        match refused(node, &error, None, &mut invalid_frames) {
                            Ok(frame) => Some(frame),
                            Err(end) => return end,
                        }
                    }
                    Reply::TopicRefused(refusal) => {
                        let (topic, error) = &*refusal;
                        match refused(node, error, Some(topic), &mut invalid_frames) {
                            Ok(frame) => Some(frame),
                            Err(end) => return end,
                        }
                    }
                };
                // A Socket.IO client waiting on an acknowledgement gets
                // the outcome in it; an answer that is more than an
                // outcome (a snapshot) follows as an event.
                if let Some(id) = ack {
                    let ack = socketio::ack_for(text.as_deref());
                    let is_error = ack["success"] == false;
                    if let Err(end) = socket.packet(node, notify_protocol::socketio::ack(id, &ack)).await {
                        return end;
                    }
                    if is_error {
                        continue;
                    }
                }
                if let Some(text) = text {
                    if let Err(end) = socket.text(node, text).await {
                        return end;
                    }
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
                if let Err(end) = socket.ping(node).await {
                    return end;
                }
            }
        }
    }
}

/// The error frame for a refused client frame, counted by code; frames
/// that were themselves wrong also count toward closing the connection.
fn refused(
    node: &Node,
    error: &FrameError,
    topic: Option<&str>,
    invalid_frames: &mut u32,
) -> Result<String, End> {
    if error.is_invalid() {
        *invalid_frames += 1;
        if *invalid_frames > node.limits.max_invalid_frames {
            return Err(End::Close(CloseCode::Policy, "too many invalid frames"));
        }
    }
    node.refusals.add(error.code());
    Ok(ServerFrame::Error {
        code: error.code(),
        message: &error.to_string(),
        topic,
    }
    .to_frame())
}

/// Sends what the queue holds and acts on its signals, until it is idle.
async fn flush(
    node: &Node,
    who: &Who<'_>,
    queue: &SendQueue,
    socket: &mut Socket,
    state: &mut State,
) -> Result<(), End> {
    loop {
        match queue.next() {
            Next::Send(frame) => {
                if let Some(id) = notification_id(&frame) {
                    if !state.sent.get_or_insert_with(Box::default).first_time(id) {
                        continue;
                    }
                }
                socket.text(node, frame).await?;
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
                return Err(End::Close(
                    CloseCode::Policy,
                    TokenRefusal::Revoked.message(),
                ))
            }
            Next::Close(CloseSignal::SessionRevoked) => {
                return Err(End::Close(CloseCode::Policy, "session revoked"))
            }
            Next::Resync(since) => {
                // A revocation may have been announced while the bus was
                // away.
                let token = &who.token;
                let check = node
                    .gate
                    .check_revoked(who.user, token.id.as_deref(), token.issued);
                if Box::pin(check).await == Err(TokenRefusal::Revoked) {
                    return Err(End::Close(
                        CloseCode::Policy,
                        TokenRefusal::Revoked.message(),
                    ));
                }
                let catchup = Catchup::Since(since.max(who.connected_at));
                Box::pin(catch_up(node, who, catchup, state, socket)).await?;
            }
            Next::Idle => return Ok(()),
        }
    }
}

/// When a token expiring at `exp` (Unix seconds) stops being accepted: the
/// same leeway as at connect, so a token is never accepted at the upgrade
/// and then closed at once.
fn deadline(exp: u64, node: &Node) -> tokio::time::Instant {
    let until = exp.saturating_add(node.gate.jwt().leeway().as_secs());
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
