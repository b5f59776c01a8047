//! Chat as clients see it: messages, conversations, the frames that carry
//! them, and the limits a message is checked against. The same checks run
//! for a message sent over the WebSocket and over the HTTP API.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::event::{micros, opt_micros};

/// Characters in a message body.
pub const MAX_BODY_CHARS: usize = 4000;
pub const MAX_ATTACHMENTS: usize = 10;
pub const MAX_CLIENT_ID_LEN: usize = 64;
pub const MAX_URL_LEN: usize = 2048;
pub const MAX_ATTACHMENT_NAME_CHARS: usize = 255;
pub const MAX_MIME_TYPE_LEN: usize = 127;
/// The largest attachment size accepted: what a JavaScript number holds
/// exactly.
pub const MAX_ATTACHMENT_SIZE: u64 = (1 << 53) - 1;
pub const MAX_TITLE_CHARS: usize = 255;
/// Members of a group, its creator included.
pub const MAX_GROUP_MEMBERS: usize = 500;

/// A reference to a file stored elsewhere; the service keeps only this
/// (unknown fields are dropped, as in every client frame).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Attachment {
    pub url: String,
    pub name: String,
    pub mime_type: String,
    pub size: u64,
}

/// A message as its sender writes it (the body of an HTTP send, where an
/// unknown field is refused).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Draft {
    pub body: String,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
}

/// Why a message was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("a message body must not be empty or only white space")]
    EmptyBody,
    #[error("a message body is at most {MAX_BODY_CHARS} characters")]
    BodyTooLong,
    #[error("a message has at most {MAX_ATTACHMENTS} attachments")]
    TooManyAttachments,
    #[error("attachments[{0}]: {1}")]
    InvalidAttachment(usize, &'static str),
    #[error("client_id is 1 to {MAX_CLIENT_ID_LEN} visible ASCII characters")]
    InvalidClientId,
}

impl MessageError {
    pub fn code(&self) -> &'static str {
        match self {
            MessageError::EmptyBody => "empty_message",
            MessageError::BodyTooLong => "message_too_long",
            MessageError::TooManyAttachments => "too_many_attachments",
            MessageError::InvalidAttachment(..) => "invalid_attachment",
            MessageError::InvalidClientId => "invalid_client_id",
        }
    }
}

fn visible_ascii(text: &str, max: usize) -> bool {
    (1..=max).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_graphic())
}

fn plain_text(text: &str, max_chars: usize) -> bool {
    !text.trim().is_empty()
        && text.chars().count() <= max_chars
        && !text.chars().any(char::is_control)
}

/// `type/subtype`, each a token of RFC 6838's restricted names.
fn valid_mime_type(mime: &str) -> bool {
    let token = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    mime.len() <= MAX_MIME_TYPE_LEN
        && mime
            .split_once('/')
            .is_some_and(|(kind, sub)| token(kind) && token(sub))
}

impl Attachment {
    fn check(&self) -> Result<(), &'static str> {
        let url = self.url.to_ascii_lowercase();
        // Only links a browser fetches: never `javascript:` or `data:`.
        if !(url.starts_with("https://") || url.starts_with("http://"))
            || !visible_ascii(&self.url, MAX_URL_LEN)
        {
            return Err("url must be an http(s) URL of at most 2048 visible ASCII characters");
        }
        if !plain_text(&self.name, MAX_ATTACHMENT_NAME_CHARS) {
            return Err("name is 1 to 255 characters without control characters");
        }
        if !valid_mime_type(&self.mime_type) {
            return Err("mime_type must look like type/subtype");
        }
        if self.size > MAX_ATTACHMENT_SIZE {
            return Err("size is a byte count of at most 2^53 - 1");
        }
        Ok(())
    }
}

impl Draft {
    pub fn validate(&self) -> Result<(), MessageError> {
        if self.body.trim().is_empty() {
            return Err(MessageError::EmptyBody);
        }
        if self.body.chars().count() > MAX_BODY_CHARS {
            return Err(MessageError::BodyTooLong);
        }
        if let Some(id) = &self.client_id {
            if !visible_ascii(id, MAX_CLIENT_ID_LEN) {
                return Err(MessageError::InvalidClientId);
            }
        }
        if self.attachments.len() > MAX_ATTACHMENTS {
            return Err(MessageError::TooManyAttachments);
        }
        for (i, attachment) in self.attachments.iter().enumerate() {
            attachment
                .check()
                .map_err(|why| MessageError::InvalidAttachment(i, why))?;
        }
        Ok(())
    }
}

/// A group title: 1 to 255 characters without control characters.
pub fn valid_title(title: &str) -> bool {
    plain_text(title, MAX_TITLE_CHARS)
}

/// A stored message as clients receive it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct WireMessage {
    pub id: u64,
    pub conversation_id: u64,
    pub sender_id: String,
    pub body: String,
    pub attachments: Vec<Attachment>,
    pub client_id: Option<String>,
    #[serde(serialize_with = "micros")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "opt_micros")]
    pub edited_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "opt_micros")]
    pub deleted_at: Option<DateTime<Utc>>,
}

/// A member as listed with a conversation.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct WireMember {
    pub user_id: String,
    #[serde(serialize_with = "micros")]
    pub joined_at: DateTime<Utc>,
    pub last_read_message_id: u64,
}

/// A conversation as one of its members sees it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct WireConversation {
    pub id: u64,
    /// `direct` or `group`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: Option<String>,
    pub created_by: String,
    #[serde(serialize_with = "micros")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "micros")]
    pub last_activity_at: DateTime<Utc>,
    pub members: Vec<WireMember>,
    pub last_message: Option<WireMessage>,
    /// Messages of others after this member's read mark.
    pub unread_count: u64,
    pub last_read_message_id: u64,
}

/// The chat frames the services write. Only serialised: a frame is built
/// once and its bytes go to every member's connections.
#[derive(Debug, Serialize)]
#[serde(tag = "type")]
pub enum ChatFrame<'a> {
    /// To the connection that sent `message.send`, once it is stored.
    #[serde(rename = "message.sent")]
    Sent {
        client_id: Option<&'a str>,
        message: &'a WireMessage,
    },
    /// To every connection of every member, the sender's included.
    #[serde(rename = "message")]
    Message { message: &'a WireMessage },
    /// To every member's connections: the sender changed the body.
    #[serde(rename = "message.updated")]
    Updated { message: &'a WireMessage },
    /// To every member's connections: the sender deleted it; `body` is
    /// empty and `deleted_at` set.
    #[serde(rename = "message.deleted")]
    Deleted { message: &'a WireMessage },
    /// To the other members' connections.
    #[serde(rename = "typing")]
    Typing {
        conversation_id: u64,
        user_id: &'a str,
    },
    /// To every member's connections: `user_id` has read up to `up_to`.
    #[serde(rename = "messages_read")]
    Read {
        conversation_id: u64,
        user_id: &'a str,
        up_to: u64,
    },
    /// A chat frame was refused; names what it was about.
    #[serde(rename = "error")]
    Refused {
        code: &'a str,
        message: &'a str,
        conversation_id: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        client_id: Option<&'a str>,
    },
}

impl ChatFrame<'_> {
    pub fn to_frame(&self) -> String {
        // Plain strings and numbers: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }
}

/// A chat frame from a client.
#[derive(Debug, PartialEq, Eq)]
pub enum ChatRequest {
    /// `message.send`
    Send { conversation_id: u64, draft: Draft },
    /// `typing`
    Typing { conversation_id: u64 },
    /// `message.read`
    Read { conversation_id: u64, up_to: u64 },
}

impl ChatRequest {
    pub fn conversation_id(&self) -> u64 {
        match self {
            ChatRequest::Send {
                conversation_id, ..
            }
            | ChatRequest::Typing { conversation_id }
            | ChatRequest::Read {
                conversation_id, ..
            } => *conversation_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(body: &str) -> Draft {
        Draft {
            body: body.into(),
            client_id: None,
            attachments: Vec::new(),
        }
    }

    fn file(url: &str) -> Attachment {
        Attachment {
            url: url.into(),
            name: "a.png".into(),
            mime_type: "image/png".into(),
            size: 10,
        }
    }

    #[test]
    fn messages_are_checked() {
        assert_eq!(draft("hi").validate(), Ok(()));
        assert_eq!(draft(" \n ").validate(), Err(MessageError::EmptyBody));
        assert_eq!(draft("").validate(), Err(MessageError::EmptyBody));
        assert_eq!(draft(&"é".repeat(4000)).validate(), Ok(()));
        assert_eq!(
            draft(&"é".repeat(4001)).validate(),
            Err(MessageError::BodyTooLong)
        );
        let mut with_id = draft("x");
        with_id.client_id = Some("a b".into());
        assert_eq!(with_id.validate(), Err(MessageError::InvalidClientId));
        with_id.client_id = Some("c".repeat(65));
        assert_eq!(with_id.validate(), Err(MessageError::InvalidClientId));
        with_id.client_id = Some("c-1".into());
        assert_eq!(with_id.validate(), Ok(()));

        let mut files = draft("x");
        files.attachments = vec![file("https://cdn.example/a.png"); 10];
        assert_eq!(files.validate(), Ok(()));
        files.attachments.push(file("https://cdn.example/a.png"));
        assert_eq!(files.validate(), Err(MessageError::TooManyAttachments));
        for bad in [
            "javascript:alert(1)",
            "data:text/html,x",
            "ftp://x",
            "https://a b",
        ] {
            files.attachments = vec![file(bad)];
            assert!(
                matches!(files.validate(), Err(MessageError::InvalidAttachment(0, _))),
                "{bad}"
            );
        }
        files.attachments = vec![file("https://x/y")];
        files.attachments[0].mime_type = "image".into();
        assert_eq!(
            files.validate().map_err(|e| e.code()),
            Err("invalid_attachment")
        );
        files.attachments[0].mime_type = "application/vnd.ms-excel".into();
        files.attachments[0].size = MAX_ATTACHMENT_SIZE + 1;
        assert_eq!(
            files.validate().map_err(|e| e.code()),
            Err("invalid_attachment")
        );
    }

    #[test]
    fn frames_carry_their_type() {
        let message = WireMessage {
            id: 5,
            conversation_id: 2,
            sender_id: "alice".into(),
            body: "hi".into(),
            attachments: Vec::new(),
            client_id: Some("c1".into()),
            created_at: DateTime::from_timestamp(0, 0).unwrap_or_default(),
            edited_at: None,
            deleted_at: None,
        };
        let sent = ChatFrame::Sent {
            client_id: Some("c1"),
            message: &message,
        }
        .to_frame();
        assert!(sent.starts_with(r#"{"type":"message.sent","client_id":"c1","message":{"id":5,"#));
        assert!(sent.contains(r#""created_at":"1970-01-01T00:00:00.000000Z","edited_at":null"#));
        assert_eq!(
            ChatFrame::Typing {
                conversation_id: 2,
                user_id: "bob"
            }
            .to_frame(),
            r#"{"type":"typing","conversation_id":2,"user_id":"bob"}"#
        );
        assert_eq!(
            ChatFrame::Read {
                conversation_id: 2,
                user_id: "bob",
                up_to: 5
            }
            .to_frame(),
            r#"{"type":"messages_read","conversation_id":2,"user_id":"bob","up_to":5}"#
        );
        assert_eq!(
            ChatFrame::Refused {
                code: "conversation_not_found",
                message: "m",
                conversation_id: 2,
                client_id: None
            }
            .to_frame(),
            r#"{"type":"error","code":"conversation_not_found","message":"m","conversation_id":2}"#
        );
    }
}
