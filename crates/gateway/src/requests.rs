//! What a connection does with a valid client frame: read marks, acks,
//! token refreshes, pings and resume requests; chat frames are handed to
//! [`crate::chat_requests`].

use notify_auth::Claims;
use notify_protocol::{ClientFrame, Event, FrameError, ServerFrame};
use notify_store::Notification;

use crate::chat_requests;
use crate::connection::Who;
use crate::node::Node;

/// The answer to a client frame.
pub(crate) enum Reply {
    Nothing,
    Text(String),
    Refused(FrameError),
    Resume(u64),
    /// A valid newer token for the same user arrived.
    Refreshed(Token),
    /// A topic request was refused; the error frame names the topic
    /// (boxed: rare, and it would widen every connection's task).
    TopicRefused(Box<(String, FrameError)>),
}

/// What a connection keeps of the token it runs on.
pub(crate) struct Token {
    /// `exp` (Unix seconds): the connection closes then.
    pub(crate) expires: u64,
    /// `iat` and `jti`, to check again for revocations missed while the
    /// bus was away.
    pub(crate) issued: Option<u64>,
    pub(crate) id: Option<Box<str>>,
    /// What the topic policy grants.
    pub(crate) roles: Box<[String]>,
}

impl From<Claims> for Token {
    fn from(claims: Claims) -> Self {
        Token {
            expires: claims.exp,
            issued: claims.iat,
            id: claims.jti.map(String::into_boxed_str),
            roles: claims.roles.into_boxed_slice(),
        }
    }
}

/// Acts on a valid client frame other than a topic request (see
/// [`crate::topic_requests`]).
pub(crate) async fn handle(node: &Node, who: &Who<'_>, frame: ClientFrame) -> Reply {
    let user = who.user;
    match frame {
        ClientFrame::Ping => Reply::Text(ServerFrame::Pong.to_frame()),
        ClientFrame::Auth { .. } => {
            Reply::Refused(FrameError::Invalid("already authenticated".into()))
        }
        ClientFrame::Resume { after } => Reply::Resume(after),
        ClientFrame::Refresh { token } => match node.gate.admit(&token).await {
            Ok(claims) if claims.sub == user => Reply::Refreshed(Token::from(claims)),
            Ok(_) => Reply::Refused(FrameError::Invalid("the token is for another user".into())),
            Err(refusal) => Reply::Refused(FrameError::Invalid(refusal.message().into())),
        },
        // Answered by `topic_requests`, which holds the connection's
        // memberships; never routed here.
        ClientFrame::Topic(_) => Reply::Nothing,
        ClientFrame::Chat(request) => Box::pin(chat_requests::handle(node, who, *request)).await,
        ClientFrame::Ack { ids } => {
            if node.acks.record(user, ids) {
                Reply::Nothing
            } else {
                Reply::Text(
                    ServerFrame::Error {
                        code: "unavailable",
                        message: "acks are not being recorded right now, send them again later",
                        topic: None,
                    }
                    .to_frame(),
                )
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
                    node.publisher
                        .publish_to_user(&node.channels, user, &Event::Read { ids });
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
                    node.publisher
                        .publish_to_user(&node.channels, user, &Event::ReadAll { up_to });
                    Reply::Nothing
                }
                Ok(_) => Reply::Nothing,
                Err(error) => Reply::Text(storage_error(&error)),
            }
        }
    }
}

fn storage_error(error: &notify_store::StoreError) -> String {
    tracing::warn!(%error, "could not store a read mark");
    ServerFrame::Error {
        code: "unavailable",
        message: "could not save the change, retry later",
        topic: None,
    }
    .to_frame()
}
