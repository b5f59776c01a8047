//! What a connection does with a chat frame: `message.send`, `typing` and
//! `message.read` (see `notify_chat`, which the api's HTTP routes share).
//! A refusal names the conversation, and the `client_id` of a refused
//! message, so the client can tell which of its requests failed.

use notify_chat::ChatError;
use notify_protocol::{ChatFrame, ChatRequest};

use crate::connection::Who;
use crate::node::Node;
use crate::requests::Reply;

pub(crate) async fn handle(node: &Node, who: &Who<'_>, request: ChatRequest) -> Reply {
    let chat = &node.chat;
    match request {
        ChatRequest::Send {
            conversation_id,
            draft,
        } => match chat.send(who.user, conversation_id, &draft).await {
            Ok((message, _)) => Reply::Text(
                ChatFrame::Sent {
                    client_id: draft.client_id.as_deref(),
                    message: &message,
                }
                .to_frame(),
            ),
            Err(error) => refused(node, &error, conversation_id, draft.client_id.as_deref()),
        },
        ChatRequest::Typing { conversation_id } => {
            match chat.typing(who.user, conversation_id).await {
                Ok(()) => Reply::Nothing,
                Err(error) => refused(node, &error, conversation_id, None),
            }
        }
        ChatRequest::Read {
            conversation_id,
            up_to,
        } => match chat.read(who.user, conversation_id, up_to).await {
            Ok(_) => Reply::Nothing,
            Err(error) => refused(node, &error, conversation_id, None),
        },
    }
}

fn refused(node: &Node, error: &ChatError, conversation_id: u64, client_id: Option<&str>) -> Reply {
    node.refusals.add(error.code());
    Reply::Text(
        ChatFrame::Refused {
            code: error.code(),
            message: &error.to_string(),
            conversation_id,
            client_id,
        }
        .to_frame(),
    )
}
