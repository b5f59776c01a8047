//! Writing to one connection's socket: every write is bounded in time, and
//! every way a connection ends goes through here.

use std::time::Duration;

use actix_ws::{CloseCode, CloseReason, ProtocolError, Session};

use crate::node::Node;

/// Longest wait to hand a close frame to a client.
pub(crate) const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the serving loop ended.
pub(crate) enum End {
    /// The client went away or closed; nothing more to send.
    Gone,
    Close(CloseCode, &'static str),
}

pub(crate) async fn finish(node: &Node, session: Session, end: End) {
    if let End::Close(code, reason) = end {
        close(node, session, code, reason).await;
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
