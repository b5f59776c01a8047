//! Stored rows as clients see them.

use notify_protocol::chat::{Attachment, WireMember};
use notify_protocol::{WireConversation, WireMessage};
use notify_store::chat::{Listed, Member, Message};

pub(crate) fn message(message: Message) -> WireMessage {
    WireMessage {
        id: message.id,
        conversation_id: message.conversation_id,
        sender_id: message.sender_id,
        body: message.body,
        // Written by `messages::send` from validated attachments.
        attachments: message
            .attachments
            .and_then(|json| serde_json::from_str::<Vec<Attachment>>(&json).ok())
            .unwrap_or_default(),
        client_id: message.client_id,
        created_at: message.created_at.and_utc(),
        edited_at: message.edited_at.map(|t| t.and_utc()),
        deleted_at: message.deleted_at.map(|t| t.and_utc()),
    }
}

pub(crate) fn member(member: Member) -> WireMember {
    WireMember {
        user_id: member.user_id,
        joined_at: member.joined_at.and_utc(),
        last_read_message_id: member.last_read_message_id,
    }
}

pub(crate) fn conversation(listed: Listed) -> WireConversation {
    let c = listed.conversation;
    WireConversation {
        id: c.id,
        kind: c.kind,
        title: c.title,
        created_by: c.created_by,
        created_at: c.created_at.and_utc(),
        last_activity_at: c.last_activity_at.and_utc(),
        members: listed.members.into_iter().map(member).collect(),
        last_message: listed.last_message.map(message),
        unread_count: listed.unread_count,
        last_read_message_id: listed.last_read_message_id,
    }
}
