//! From an upgraded socket to a greeted connection: first-frame
//! authentication when the upgrade carried no token, waiting for the user's
//! channel to be subscribed, and the `welcome` frame.

use std::time::Duration;

use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, Session};
use notify_auth::Claims;
use notify_protocol::{ClientFrame, ServerFrame};
use notify_store::Notification;

use crate::budget::FrameBudget;
use crate::connection::Who;
use crate::node::Node;
use crate::send_queue::SendQueue;
use crate::socket::{protocol_end, write, End};

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
    let session_id = format!("{:032x}", rand::random::<u128>());
    tracing::debug!(%session_id, "connection authenticated");
    ServerFrame::Welcome {
        session_id: &session_id,
        node: &node.id,
        heartbeat_s: node.limits.heartbeat.as_secs(),
        unread_count,
    }
    .to_frame()
}

pub(crate) async fn authenticate(
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
                    Ok(ClientFrame::Auth { token }) => match node.gate.admit(&token).await {
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
