//! Events published on a user's channel. Each one is also, byte for byte, the
//! text frame a connected client receives, so the serialised form is the
//! contract documented in `docs/protocol.md`.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;

/// A notification as clients see it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WireNotification {
    pub id: u64,
    pub user_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub message: String,
    pub link: Option<String>,
    /// Kept as the sender's JSON text so it is never re-encoded on the way.
    pub metadata: Option<Box<RawValue>>,
    #[serde(serialize_with = "micros")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "opt_micros")]
    pub read_at: Option<DateTime<Utc>>,
}

/// One change to a user's notifications. Only serialised: receivers forward
/// the bytes, and an internally tagged enum cannot carry `RawValue` back in.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A new notification.
    Notification { notification: WireNotification },
    /// These notifications were marked read.
    Read { ids: Vec<u64> },
    /// Every notification with an id up to and including `up_to` is read.
    ReadAll { up_to: u64 },
    /// These notifications were deleted.
    Deleted { ids: Vec<u64> },
}

impl Event {
    /// The frame exactly as it is published and delivered.
    pub fn to_frame(&self) -> String {
        // Serialising these types cannot fail: every field is a plain value
        // or already-validated JSON text.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }
}

/// Timestamps go out as RFC 3339 in UTC with microseconds, which is the
/// precision MySQL stores (`DATETIME(6)`).
pub fn format_timestamp(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub(crate) fn micros<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_timestamp(at))
}

pub(crate) fn opt_micros<S: Serializer>(
    at: &Option<DateTime<Utc>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => micros(at, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn notification_frame_shape() {
        let event = Event::Notification {
            notification: WireNotification {
                id: 7,
                user_id: "u1".into(),
                kind: "comment".into(),
                title: "Hi".into(),
                message: "New comment".into(),
                link: None,
                metadata: Some(RawValue::from_string(r#"{"a":1}"#.into()).unwrap()),
                created_at: Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap(),
                read_at: None,
            },
        };
        assert_eq!(
            event.to_frame(),
            r#"{"type":"notification","notification":{"id":7,"user_id":"u1","type":"comment","title":"Hi","message":"New comment","link":null,"metadata":{"a":1},"created_at":"2026-01-02T03:04:05.000000Z","read_at":null}}"#
        );
        let value: serde_json::Value = serde_json::from_str(&event.to_frame()).unwrap();
        let back: WireNotification = serde_json::from_value(value["notification"].clone()).unwrap();
        assert_eq!(back.metadata.unwrap().get(), r#"{"a":1}"#);
    }

    #[test]
    fn change_frames() {
        assert_eq!(
            Event::Read { ids: vec![1, 2] }.to_frame(),
            r#"{"type":"read","ids":[1,2]}"#
        );
        assert_eq!(
            Event::ReadAll { up_to: 9 }.to_frame(),
            r#"{"type":"read_all","up_to":9}"#
        );
        assert_eq!(
            Event::Deleted { ids: vec![3] }.to_frame(),
            r#"{"type":"deleted","ids":[3]}"#
        );
    }
}
