//! Writing to one connection's socket: every write is bounded in time and
//! counted, and every way a connection ends goes through here.

use std::time::Duration;

use actix_ws::{CloseCode, CloseReason, ProtocolError, Session};
use bytestring::ByteString;
use notify_protocol::socketio::{self, NotificationEvent};

use crate::node::Node;

/// Longest wait to hand a close frame to a client.
pub(crate) const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the serving loop ended.
#[derive(Debug, Clone, Copy)]
pub enum End {
    /// The client went away; nothing more to send.
    Gone,
    /// The client closed, with this code if it gave one.
    Closed(Option<u16>),
    Close(CloseCode, &'static str),
}

/// How a connection's frames look on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// docs/protocol.md: JSON frames, WebSocket pings.
    Native,
    /// Socket.IO over Engine.IO (`/socket.io/`): every native server frame
    /// is translated into events, pings are Engine.IO packets; new
    /// notifications go out under this event name.
    SocketIo(NotificationEvent),
}

/// One connection's socket and what was written to it, for its
/// connection log row.
pub struct Socket {
    session: Session,
    pub(crate) dialect: Dialect,
    /// Socket.IO: the CONNECT was answered, so the client holds a
    /// connected socket that a DISCONNECT would end.
    pub(crate) connected: bool,
    /// Frames the client sent, counted by whoever reads them.
    pub(crate) frames_in: u32,
    pub(crate) frames_out: u32,
    pub(crate) bytes_out: u64,
}

impl Socket {
    pub(crate) fn new(session: Session, dialect: Dialect) -> Self {
        Self {
            session,
            dialect,
            connected: false,
            frames_in: 0,
            frames_out: 0,
            bytes_out: 0,
        }
    }

    /// Sends a native server frame, as the connection's dialect writes it.
    pub(crate) async fn text(
        &mut self,
        node: &Node,
        text: impl Into<ByteString>,
    ) -> Result<(), End> {
        match self.dialect {
            Dialect::Native => self.packet(node, text).await,
            Dialect::SocketIo(notification_event) => {
                let text = text.into();
                for packet in socketio::translate(&text, notification_event) {
                    self.packet(node, packet).await?;
                }
                Ok(())
            }
        }
    }

    /// A refusal after the handshake's CONNECT arrived but before it was
    /// answered: a Socket.IO client gets it as a CONNECT_ERROR with the
    /// code (a native client has only the close that follows).
    pub(crate) async fn refuse_connect(&mut self, node: &Node, code: &str) {
        if let Dialect::SocketIo(_) = self.dialect {
            let _ = self.packet(node, socketio::connect_error("/", code)).await;
        }
    }

    /// Sends a text frame as it is.
    pub(crate) async fn packet(
        &mut self,
        node: &Node,
        text: impl Into<ByteString>,
    ) -> Result<(), End> {
        let text = text.into();
        let len = text.len() as u64;
        write(node, self.session.text(text)).await?;
        self.count(len);
        Ok(())
    }

    /// The heartbeat: a WebSocket ping, or Engine.IO's (which Socket.IO
    /// clients answer, and count on to know the server is there).
    pub(crate) async fn ping(&mut self, node: &Node) -> Result<(), End> {
        if let Dialect::SocketIo(_) = self.dialect {
            return self.packet(node, socketio::PING).await;
        }
        write(node, self.session.ping(b"")).await?;
        self.count(0);
        Ok(())
    }

    pub(crate) async fn pong(&mut self, node: &Node, bytes: &[u8]) -> Result<(), End> {
        write(node, self.session.pong(bytes)).await?;
        self.count(bytes.len() as u64);
        Ok(())
    }

    /// Answers the client's close frame, so its closing handshake completes.
    pub(crate) async fn echo_close(&mut self, reason: Option<CloseReason>) {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.session.clone().close(reason)).await;
    }

    fn count(&mut self, bytes: u64) {
        self.frames_out = self.frames_out.saturating_add(1);
        self.bytes_out = self.bytes_out.saturating_add(bytes);
    }

    /// Closes the socket as `end` says.
    pub(crate) async fn finish(self, node: &Node, end: &End) {
        if let End::Close(code, reason) = *end {
            // A Socket.IO client reconnects by itself after a lost
            // transport (a drain, a slow client), but not after a
            // DISCONNECT: sent for what the server means to end (a revoked
            // token or session, a misbehaving client). An expired token is
            // a lost transport: the reconnect asks the app for a new one.
            if self.connected
                && matches!(self.dialect, Dialect::SocketIo(_))
                && code == CloseCode::Policy
                && reason != "token expired"
            {
                let _ = tokio::time::timeout(
                    CLOSE_TIMEOUT,
                    self.session.clone().text(socketio::DISCONNECT),
                )
                .await;
            }
            close(node, self.session, code, reason).await;
        }
    }
}

/// Writes to the socket, waiting at most the send timeout: a client that
/// stops reading must not hold up its own connection's task (heartbeat,
/// token expiry, revocation) when no proxy is in front.
pub(crate) async fn write(
    node: &Node,
    write: impl std::future::Future<Output = Result<(), actix_ws::Closed>>,
) -> Result<(), End> {
    match tokio::time::timeout(node.limits.send_timeout, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(End::Gone),
        Err(_) => Err(End::Close(CloseCode::Again, "too slow: send timed out")),
    }
}

pub(crate) fn protocol_end(error: &ProtocolError) -> End {
    match error {
        ProtocolError::Overflow => End::Close(CloseCode::Size, "frame too large"),
        _ => End::Close(CloseCode::Protocol, "protocol error"),
    }
}

pub(crate) async fn close(node: &Node, session: Session, code: CloseCode, reason: &'static str) {
    node.closes.add(reason);
    let reason = CloseReason {
        code,
        description: Some(reason.to_owned()),
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, session.close(Some(reason))).await;
}
