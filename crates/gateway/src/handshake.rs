//! From an upgraded socket to a greeted connection: first-frame
//! authentication when the upgrade carried no token, waiting for the user's
//! channel to be subscribed, and the `welcome` frame.

use std::time::Duration;

use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode};
use notify_auth::Claims;
use notify_protocol::{ClientFrame, ServerFrame};
use notify_store::Notification;

use crate::budget::FrameBudget;
use crate::connection::Who;
use crate::node::Node;
use crate::send_queue::SendQueue;
use crate::socket::{protocol_end, End, Socket};

/// Longest wait for the user's channel to be subscribed before greeting; if
/// Redis is slow or away the connection proceeds, and catches up from
/// MySQL once the subscription is confirmed.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(3);

/// Waits (a while) for the user's channel to be subscribed. Every event
/// after `welcome` must arrive: if the subscription is still unconfirmed,
/// what the live path misses until it is comes from MySQL, from
/// `connected_at` on.
pub(crate) async fn await_subscription(queue: &SendQueue, connected_at: chrono::NaiveDateTime) {
    let _ = tokio::time::timeout(SUBSCRIBE_WAIT, async {
        while !queue.is_subscribed() {
            queue.changed().await;
        }
    })
    .await;
    queue.resync_once_subscribed(connected_at);
}

pub(crate) async fn greeting(node: &Node, who: &Who<'_>) -> String {
    let unread_count = {
        let _turn = who.registration.db_turn().await;
        match notify_store::pool::get(&node.db).await {
            Ok(mut conn) => Notification::unread_count(&mut conn, who.user).await.ok(),
            Err(_) => None,
        }
    };
    let session_id = who.session.to_string();
    ServerFrame::Welcome {
        session_id: &session_id,
        node: &node.id,
        heartbeat_s: node.limits.heartbeat.as_secs(),
        unread_count,
    }
    .to_frame()
}

const AUTH_REQUIRED: (&str, End) = (
    "auth_required",
    End::Close(CloseCode::Policy, "authentication required"),
);

/// Waits for the `auth` frame; a failure is the refusal's code and how the
/// socket ends.
pub(crate) async fn authenticate(
    node: &Node,
    socket: &mut Socket,
    stream: &mut AggregatedMessageStream,
    budget: &mut FrameBudget,
) -> Result<Claims, (&'static str, End)> {
    let limits = &node.limits;
    let deadline = tokio::time::sleep(node.limits.auth_timeout);
    tokio::pin!(deadline);
    loop {
        let message = tokio::select! {
            _ = &mut deadline => {
                return Err(("auth_timeout", End::Close(CloseCode::Policy, "authentication timeout")))
            }
            message = stream.recv() => message,
        };
        if let Some(Ok(_)) = message {
            socket.frames_in = socket.frames_in.saturating_add(1);
        }
        match message {
            Some(Ok(AggregatedMessage::Text(text))) => {
                return match ClientFrame::parse(&text) {
                    Ok(ClientFrame::Auth { token }) => match node.gate.admit(&token).await {
                        Ok(claims) => Ok(claims),
                        Err(refusal) => Err((
                            refusal.code(),
                            End::Close(CloseCode::Policy, refusal.message()),
                        )),
                    },
                    _ => Err(AUTH_REQUIRED),
                };
            }
            Some(Ok(AggregatedMessage::Close(reason))) => {
                let code = reason.as_ref().map(|r| u16::from(r.code));
                socket.echo_close(reason).await;
                return Err(("closed_before_auth", End::Closed(code)));
            }
            None => return Err(("closed_before_auth", End::Gone)),
            // Nobody is known yet: no warning, the first excess closes.
            Some(Ok(AggregatedMessage::Ping(_) | AggregatedMessage::Pong(_)))
                if !budget.allow(limits.frame_rate, limits.frame_burst) =>
            {
                return Err((
                    "rate_limited",
                    End::Close(CloseCode::Policy, "too many frames"),
                ));
            }
            Some(Ok(AggregatedMessage::Ping(bytes))) => socket
                .pong(node, &bytes)
                .await
                .map_err(|end| ("closed_before_auth", end))?,
            Some(Ok(AggregatedMessage::Pong(_))) => {}
            Some(Ok(AggregatedMessage::Binary(_))) => return Err(AUTH_REQUIRED),
            Some(Err(error)) => return Err(("protocol_error", protocol_end(&error))),
        }
    }
}
