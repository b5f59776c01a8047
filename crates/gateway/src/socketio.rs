//! Socket.IO clients (`socket.io-client` 4, Engine.IO v4 over the
//! WebSocket transport) on the same connections as native ones: the
//! handshake (open packet, CONNECT with `auth`, CONNECT_ERROR), and the
//! translation of each packet into a native client frame and of each
//! answer into an ACK. Everything else (registration, delivery, resume,
//! heartbeat, drain, limits, revocation) is the native connection's; the
//! packet format is `notify_protocol::socketio`.

use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode};
use notify_auth::Claims;
use notify_protocol::socketio::{self, ConnectAuth, Incoming, PacketError};
use notify_protocol::{ClientFrame, FrameError};
use serde_json::{json, Value};

use crate::budget::FrameBudget;
use crate::node::Node;
use crate::socket::{protocol_end, End, Socket};

/// Engine.IO's open packet, then the client's CONNECT: the claims of its
/// token (from `auth.token`, or the one that came with the upgrade) and
/// the id to resume after (`auth.after`). A refusal is answered with a
/// CONNECT_ERROR whose `message` is the error code, then the socket closes.
pub(crate) async fn handshake(
    node: &Node,
    socket: &mut Socket,
    stream: &mut AggregatedMessageStream,
    budget: &mut FrameBudget,
    upgrade_token: Option<String>,
    sid: &str,
) -> Result<(Claims, Option<u64>), (&'static str, End)> {
    let limits = &node.limits;
    let millis = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    // The client gives up when no ping came within pingInterval +
    // pingTimeout of the open packet; the first ping goes out once the
    // connection is served, after the CONNECT (up to the auth timeout).
    let open = socketio::open_packet(
        sid,
        millis(limits.heartbeat),
        millis(limits.heartbeat + limits.auth_timeout),
        limits.max_frame_bytes,
    );
    socket
        .packet(node, open)
        .await
        .map_err(|end| ("closed_before_auth", end))?;
    let deadline = tokio::time::sleep(limits.auth_timeout);
    tokio::pin!(deadline);
    loop {
        let message = tokio::select! {
            _ = &mut deadline => {
                return refuse(node, socket, "auth_timeout", "authentication timeout").await;
            }
            message = stream.recv() => message,
        };
        if let Some(Ok(_)) = message {
            socket.frames_in = socket.frames_in.saturating_add(1);
            if !budget.allow(limits.frame_rate, limits.frame_burst) {
                return refuse(node, socket, "rate_limited", "too many frames").await;
            }
        }
        let text = match message {
            Some(Ok(AggregatedMessage::Text(text))) => text,
            Some(Ok(AggregatedMessage::Close(reason))) => {
                let code = reason.as_ref().map(|r| u16::from(r.code));
                socket.echo_close(reason).await;
                return Err(("closed_before_auth", End::Closed(code)));
            }
            None => return Err(("closed_before_auth", End::Gone)),
            Some(Ok(AggregatedMessage::Ping(bytes))) => {
                socket
                    .pong(node, &bytes)
                    .await
                    .map_err(|end| ("closed_before_auth", end))?;
                continue;
            }
            Some(Ok(AggregatedMessage::Pong(_))) => continue,
            Some(Ok(AggregatedMessage::Binary(_))) => {
                return refuse(
                    node,
                    socket,
                    "unsupported_frame",
                    "binary frames are not supported",
                )
                .await;
            }
            Some(Err(error)) => return Err(("protocol_error", protocol_end(&error))),
        };
        match socketio::parse(&text) {
            Ok(Incoming::Connect { auth }) => {
                let auth = match ConnectAuth::parse(auth.as_deref()) {
                    Ok(auth) => auth,
                    Err(_) => {
                        return refuse(node, socket, "invalid_auth", "invalid auth payload").await
                    }
                };
                let Some(token) = auth.token.or(upgrade_token) else {
                    return refuse(node, socket, "auth_required", "authentication required").await;
                };
                return match node.gate.admit(&token).await {
                    Ok(claims) => Ok((claims, auth.after)),
                    Err(refusal) => refuse(node, socket, refusal.code(), refusal.message()).await,
                };
            }
            Ok(Incoming::ConnectElsewhere { namespace }) => {
                let packet = socketio::connect_error(&namespace, "invalid_namespace");
                socket
                    .packet(node, packet)
                    .await
                    .map_err(|end| ("closed_before_auth", end))?;
            }
            Ok(Incoming::Ping(data)) => socket
                .packet(node, socketio::pong(&data))
                .await
                .map_err(|end| ("closed_before_auth", end))?,
            Ok(Incoming::Pong | Incoming::Noop | Incoming::Ack) => {}
            Ok(Incoming::Close | Incoming::Disconnect) => {
                return Err(("closed_before_auth", End::Closed(None)));
            }
            Ok(Incoming::Event { .. }) => {
                return refuse(node, socket, "auth_required", "authentication required").await;
            }
            Err(_) => {
                return refuse(node, socket, "invalid_auth", "authentication required").await;
            }
        }
    }
}

/// A CONNECT_ERROR with the code, then the close as for a native client.
async fn refuse(
    node: &Node,
    socket: &mut Socket,
    code: &'static str,
    reason: &'static str,
) -> Result<(Claims, Option<u64>), (&'static str, End)> {
    let _ = socket
        .packet(node, socketio::connect_error("/", code))
        .await;
    Err((code, End::Close(CloseCode::Policy, reason)))
}

/// What a packet of a connected Socket.IO client asks for.
pub(crate) enum Read {
    /// A client frame (or why it is not one), and the ack id the client
    /// waits on, if any.
    Frame(Result<ClientFrame, FrameError>, Option<u64>),
    /// A packet to answer directly (a pong to the client's ping).
    Answer(String),
    /// Nothing to do (a pong, a noop).
    Nothing,
    /// A CONNECT again: answered again with the session id.
    Connect,
    /// The client is leaving.
    End(End),
}

pub(crate) fn read(text: &str) -> Read {
    match socketio::parse(text) {
        Ok(Incoming::Event { name, args, ack }) => {
            let frame = match socketio::native_frame(&name, &args) {
                Some(native) => ClientFrame::parse(&native),
                None => Err(FrameError::UnknownType),
            };
            Read::Frame(frame, ack)
        }
        Ok(Incoming::Ping(data)) => Read::Answer(socketio::pong(&data)),
        Ok(Incoming::Pong | Incoming::Noop | Incoming::Ack) => Read::Nothing,
        // A second CONNECT on the same socket: already connected.
        Ok(Incoming::Connect { .. }) => Read::Connect,
        Ok(Incoming::ConnectElsewhere { namespace }) => {
            Read::Answer(socketio::connect_error(&namespace, "invalid_namespace"))
        }
        Ok(Incoming::Disconnect | Incoming::Close) => Read::End(End::Closed(None)),
        Err(PacketError::Binary) => Read::Frame(Err(FrameError::Binary), None),
        Err(PacketError::Malformed(why)) => {
            Read::Frame(Err(FrameError::Invalid(why.to_owned())), None)
        }
    }
}

/// The ACK for the answer to a client event: `{"success": true}`, or
/// `{"success": false, "error": code, "message": ...}` when the answer is
/// an `error` frame; `None` for an answer that is a frame of its own (sent
/// as an event after the ACK).
pub(crate) fn ack_for(answer: Option<&str>) -> Value {
    let error = answer
        .and_then(|text| serde_json::from_str::<Value>(text).ok())
        .filter(|frame| frame["type"] == "error");
    match error {
        Some(frame) => json!({
            "success": false,
            "error": frame["code"],
            "message": frame["message"],
        }),
        None => json!({ "success": true }),
    }
}
