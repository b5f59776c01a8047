//! Sending messages, typing signals and read receipts.

use std::time::Duration;

use notify_protocol::{ChatFrame, Draft, WireMessage};
use notify_store::chat::{Conversation, Member, Message, NewMessage};

use crate::{wire, Chat, ChatError};

/// A forwarded typing signal holds back the next one of the same user in
/// the same conversation for this long, on every node.
pub const TYPING_INTERVAL: Duration = Duration::from_secs(2);

/// Longest wait for Redis in a chat request.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// A member's read mark after a read receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadReceipt {
    /// Messages up to this id are read (never beyond the last message).
    pub up_to: u64,
}

impl Chat {
    /// Stores a message and delivers it to every member's connections; the
    /// bool is false when the sender had already stored a message with
    /// this `client_id`, which is returned as it is and not delivered
    /// again.
    pub async fn send(
        &self,
        user: &str,
        conversation_id: u64,
        draft: &Draft,
    ) -> Result<(WireMessage, bool), ChatError> {
        draft.validate()?;
        self.limits.message(user)?;
        let attachments = if draft.attachments.is_empty() {
            None
        } else {
            Some(serde_json::to_string(&draft.attachments).map_err(|_| ChatError::Internal)?)
        };
        let new = NewMessage {
            conversation_id,
            sender: user.to_owned(),
            body: draft.body.clone(),
            attachments,
            client_id: draft.client_id.clone(),
            at: notify_store::now(),
        };
        self.writer.write(new).await
    }

    /// Replaces the body of one of `user`'s messages; every member's
    /// connections get `message.updated`.
    pub async fn edit(
        &self,
        user: &str,
        conversation_id: u64,
        message_id: u64,
        body: &str,
    ) -> Result<WireMessage, ChatError> {
        Draft {
            body: body.to_owned(),
            client_id: None,
            attachments: Vec::new(),
        }
        .validate()?;
        self.change(user, conversation_id, message_id, Some(body))
            .await
    }

    /// Deletes one of `user`'s messages (its body and attachments are
    /// erased); every member's connections get `message.deleted`.
    pub async fn delete(
        &self,
        user: &str,
        conversation_id: u64,
        message_id: u64,
    ) -> Result<WireMessage, ChatError> {
        self.change(user, conversation_id, message_id, None).await
    }

    /// Edits (with a new body) or deletes (without) a message of `user`,
    /// and tells every member.
    async fn change(
        &self,
        user: &str,
        conversation_id: u64,
        message_id: u64,
        body: Option<&str>,
    ) -> Result<WireMessage, ChatError> {
        self.limits.message(user)?;
        let mut conn = self.conn().await?;
        if Conversation::of_member(&mut conn, conversation_id, user)
            .await?
            .is_none()
        {
            return Err(ChatError::NotFound);
        }
        let at = notify_store::now();
        let changed = match body {
            Some(body) => {
                Message::edit(&mut conn, conversation_id, message_id, user, body, at).await?
            }
            None => Message::delete(&mut conn, conversation_id, message_id, user, at).await?,
        }
        .ok_or(ChatError::MessageNotFound)?;
        let members = Member::user_ids(&mut conn, conversation_id).await?;
        drop(conn);
        let message = wire::message(changed);
        let frame = match body {
            Some(_) => ChatFrame::Updated { message: &message },
            None => ChatFrame::Deleted { message: &message },
        }
        .to_frame();
        self.publish(members.iter().map(String::as_str), &frame);
        Ok(message)
    }

    /// Tells the other members that `user` is typing, at most once per
    /// [`TYPING_INTERVAL`]; signals in between are dropped silently.
    pub async fn typing(&self, user: &str, conversation_id: u64) -> Result<(), ChatError> {
        self.limits.signal(user)?;
        let members = Member::user_ids(&mut *self.conn().await?, conversation_id).await?;
        if !members.iter().any(|m| m == user) {
            return Err(ChatError::NotFound);
        }
        let key = self.channels.typing(conversation_id, user);
        let first: Option<String> = self
            .redis_call(
                redis::cmd("SET")
                    .arg(key)
                    .arg(1)
                    .arg("NX")
                    .arg("PX")
                    .arg(u64::try_from(TYPING_INTERVAL.as_millis()).unwrap_or(u64::MAX)),
            )
            .await?;
        if first.is_some() {
            let frame = ChatFrame::Typing {
                conversation_id,
                user_id: user,
            }
            .to_frame();
            self.publish(
                members.iter().map(String::as_str).filter(|m| *m != user),
                &frame,
            );
        }
        Ok(())
    }

    /// Moves `user`'s read mark forward to `up_to` (at most the last
    /// message) and, when it moved, tells every member's connections,
    /// `user`'s other devices included.
    pub async fn read(
        &self,
        user: &str,
        conversation_id: u64,
        up_to: u64,
    ) -> Result<ReadReceipt, ChatError> {
        self.limits.signal(user)?;
        let mut conn = self.conn().await?;
        let mark = Member::mark_read(&mut conn, conversation_id, user, up_to)
            .await?
            .ok_or(ChatError::NotFound)?;
        if mark.moved {
            let members = Member::user_ids(&mut conn, conversation_id).await?;
            drop(conn);
            let frame = ChatFrame::Read {
                conversation_id,
                user_id: user,
                up_to: mark.up_to,
            }
            .to_frame();
            self.publish(members.iter().map(String::as_str), &frame);
        }
        Ok(ReadReceipt { up_to: mark.up_to })
    }

    /// Messages of others after `user`'s read mark in one conversation.
    pub async fn unread_count(&self, user: &str, conversation_id: u64) -> Result<u64, ChatError> {
        Ok(Member::unread_count(&mut *self.conn().await?, conversation_id, user).await?)
    }

    async fn redis_call<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, ChatError> {
        let call = async {
            let mut conn = self.redis.get().await.map_err(|error| {
                tracing::warn!(%error, "no Redis connection for chat");
                ChatError::Unavailable
            })?;
            Ok(cmd.query_async(&mut conn).await?)
        };
        tokio::time::timeout(REDIS_TIMEOUT, call)
            .await
            .unwrap_or(Err(ChatError::Unavailable))
    }
}
