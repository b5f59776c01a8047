//! Ephemeral events for topics, roles, lists of users and everyone, and the
//! presence frames of topics that track who is there. Like notifications,
//! an event is serialised once by whoever sends it and forwarded byte for
//! byte; its `data` is the sender's JSON text, never re-encoded.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::event::format_timestamp;

/// Who an event is for, as named in its frame.
#[derive(Debug, Clone, Copy)]
pub enum EventAudience<'a> {
    Topic(&'a str),
    Roles(&'a [String]),
    /// A list of users or everyone: the frame names neither.
    Direct,
}

/// An event as clients receive it.
pub struct TopicEvent<'a> {
    pub audience: EventAudience<'a>,
    pub event: &'a str,
    pub data: &'a RawValue,
    pub id: &'a str,
    pub sent_at: DateTime<Utc>,
    /// The user who published it from a client, set by the gateway.
    pub from: Option<&'a str>,
}

#[derive(Serialize)]
struct Frame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    topic: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    roles: Option<&'a [String]>,
    event: &'a str,
    data: &'a RawValue,
    id: &'a str,
    sent_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<&'a str>,
}

impl TopicEvent<'_> {
    /// The frame exactly as it is published and delivered.
    pub fn to_frame(&self) -> String {
        let (topic, roles) = match self.audience {
            EventAudience::Topic(topic) => (Some(topic), None),
            EventAudience::Roles(roles) => (None, Some(roles)),
            EventAudience::Direct => (None, None),
        };
        let frame = Frame {
            kind: "event",
            topic,
            roles,
            event: self.event,
            data: self.data,
            id: self.id,
            sent_at: format_timestamp(&self.sent_at),
            from: self.from,
        };
        // Strings and already-valid JSON text: serialising cannot fail.
        serde_json::to_string(&frame).unwrap_or_else(|_| String::from("{}"))
    }
}

/// A fresh event id: 128 random bits, in hex.
pub fn event_id(random: u128) -> String {
    format!("{random:032x}")
}

/// The roles a role event names, in order, read from its frame; a
/// connection holding several of them takes the event only on the channel
/// of the first, so it receives it once.
pub fn event_roles(frame: &str) -> Vec<String> {
    #[derive(Deserialize)]
    struct Roles {
        #[serde(default)]
        roles: Vec<String>,
    }
    serde_json::from_str::<Roles>(frame)
        .map(|r| r.roles)
        .unwrap_or_default()
}

/// `{"type":"presence","topic":..,"joined":..}` or `"left"`.
pub fn presence_frame(topic: &str, user: &str, joined: bool) -> String {
    #[derive(Serialize)]
    struct Presence<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        topic: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        joined: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        left: Option<&'a str>,
    }
    let frame = Presence {
        kind: "presence",
        topic,
        joined: joined.then_some(user),
        left: (!joined).then_some(user),
    };
    serde_json::to_string(&frame).unwrap_or_else(|_| String::from("{}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_keep_data_and_field_order() {
        let data = RawValue::from_string(r#"{"b": 1,  "a":[2]}"#.into()).unwrap();
        let sent_at = DateTime::from_timestamp(1_700_000_000, 5_000).unwrap();
        let event = TopicEvent {
            audience: EventAudience::Topic("status"),
            event: "service:status",
            data: &data,
            id: "abc",
            sent_at,
            from: Some("alice"),
        };
        assert_eq!(
            event.to_frame(),
            r#"{"type":"event","topic":"status","event":"service:status","data":{"b": 1,  "a":[2]},"id":"abc","sent_at":"2023-11-14T22:13:20.000005Z","from":"alice"}"#
        );
        let roles = vec!["admin".to_string(), "ops".to_string()];
        let event = TopicEvent {
            audience: EventAudience::Roles(&roles),
            from: None,
            ..event
        };
        let frame = event.to_frame();
        assert!(frame.starts_with(r#"{"type":"event","roles":["admin","ops"],"event""#));
        assert_eq!(event_roles(&frame), roles);
        assert!(event_roles("nonsense").is_empty());
    }

    #[test]
    fn presence_frames() {
        assert_eq!(
            presence_frame("space:42", "alice", true),
            r#"{"type":"presence","topic":"space:42","joined":"alice"}"#
        );
        assert_eq!(
            presence_frame("space:42", "a\"b", false),
            r#"{"type":"presence","topic":"space:42","left":"a\"b"}"#
        );
    }
}
