//! Why a chat request was refused. Codes are stable and the same over HTTP
//! and in WebSocket `error` frames.

use notify_protocol::chat::{MAX_GROUP_MEMBERS, MAX_TITLE_CHARS};
use notify_protocol::MessageError;
use notify_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error(transparent)]
    Message(#[from] MessageError),
    /// The conversation does not exist or the user is not a member: the
    /// two look the same.
    #[error("no such conversation")]
    NotFound,
    #[error("no such member in this conversation")]
    NotAMember,
    /// No such message of this user in the conversation (or it was
    /// deleted): only senders edit and delete their messages.
    #[error("no such message of yours in this conversation")]
    MessageNotFound,
    #[error("{0}")]
    InvalidMembers(String),
    #[error("invalid cursor: pass the next_cursor of the previous page")]
    InvalidCursor,
    #[error("a group has at most {MAX_GROUP_MEMBERS} members")]
    TooManyMembers,
    #[error("a title is 1 to {MAX_TITLE_CHARS} characters without control characters")]
    InvalidTitle,
    #[error("the members of a direct conversation cannot change")]
    NotAGroup,
    #[error("only the group's creator may remove other members")]
    NotCreator,
    #[error("too many chat requests, retry in {0} s")]
    RateLimited(u64),
    #[error("chat is unavailable right now, retry later")]
    Unavailable,
    #[error("internal error")]
    Internal,
}

impl ChatError {
    pub fn code(&self) -> &'static str {
        match self {
            ChatError::Message(error) => error.code(),
            ChatError::NotFound => "conversation_not_found",
            ChatError::NotAMember => "member_not_found",
            ChatError::MessageNotFound => "message_not_found",
            ChatError::InvalidMembers(_) => "invalid_members",
            ChatError::InvalidCursor => "invalid_cursor",
            ChatError::TooManyMembers => "too_many_members",
            ChatError::InvalidTitle => "invalid_title",
            ChatError::NotAGroup => "not_a_group",
            ChatError::NotCreator => "forbidden",
            ChatError::RateLimited(_) => "rate_limited",
            ChatError::Unavailable => "unavailable",
            ChatError::Internal => "internal_error",
        }
    }
}

impl From<StoreError> for ChatError {
    fn from(error: StoreError) -> Self {
        if error.is_unavailable() {
            tracing::warn!(%error, "MySQL unavailable for chat");
            ChatError::Unavailable
        } else {
            tracing::error!(%error, "chat query failed");
            ChatError::Internal
        }
    }
}

impl From<redis::RedisError> for ChatError {
    fn from(error: redis::RedisError) -> Self {
        tracing::warn!(%error, "Redis unavailable for chat");
        ChatError::Unavailable
    }
}
