//! The frames of the client protocol other than events: what a client may
//! send, and what the gateway itself writes (events published by the api
//! are forwarded untouched, see [`crate::event`]). The format is specified
//! in `docs/protocol.md`.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::chat::{Attachment, ChatRequest, Draft};

/// Most ids in one `read` frame.
pub const MAX_IDS_PER_FRAME: usize = 1000;

#[derive(Debug, PartialEq, Eq)]
pub enum ClientFrame {
    Auth {
        token: String,
    },
    Ping,
    Read {
        ids: Vec<u64>,
    },
    ReadAll,
    /// Send what was stored after `after` (the last id the client has).
    Resume {
        after: u64,
    },
    /// These notifications were received (sets `delivered_at`).
    Ack {
        ids: Vec<u64>,
    },
    /// A newer token for the same user, to keep the connection past the
    /// current token's expiry.
    Refresh {
        token: String,
    },
    /// Subscribing, unsubscribing and publishing to topics (boxed: the
    /// largest variant, and every connection's task has room for a frame).
    Topic(Box<TopicRequest>),
    /// Sending messages, typing and read receipts (boxed, as topics).
    Chat(Box<ChatRequest>),
}

#[derive(Debug, PartialEq, Eq)]
pub enum TopicRequest {
    /// Receive the events of a topic. The name is checked by the gateway,
    /// which answers about that topic.
    Subscribe {
        topic: String,
    },
    Unsubscribe {
        topic: String,
    },
    /// Send an event to a topic's subscribers (if the policy allows).
    Publish {
        topic: String,
        event: String,
        data: RawJson,
    },
}

/// JSON text kept as the client wrote it.
#[derive(Debug)]
pub struct RawJson(pub Box<RawValue>);

impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

impl Eq for RawJson {}

/// Why a frame was refused; sent back as an `error` frame.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame is not valid JSON")]
    Malformed,
    #[error("unknown frame type")]
    UnknownType,
    #[error("{0}")]
    Invalid(String),
    #[error("binary frames are not supported")]
    Binary,
    #[error("a topic is 1 to 128 characters of A-Z a-z 0-9 _ . : -")]
    InvalidTopic,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("a connection may subscribe to at most {0} topics")]
    TooManyTopics(usize),
    #[error("{0}")]
    Unavailable(&'static str),
}

impl FrameError {
    pub fn code(&self) -> &'static str {
        match self {
            FrameError::Malformed => "malformed_frame",
            FrameError::UnknownType => "unknown_type",
            FrameError::Invalid(_) => "invalid_frame",
            FrameError::Binary => "unsupported_frame",
            FrameError::InvalidTopic => "invalid_topic",
            FrameError::Forbidden(_) => "forbidden",
            FrameError::TooManyTopics(_) => "too_many_topics",
            FrameError::Unavailable(_) => "unavailable",
        }
    }

    /// Whether the frame itself was wrong (counted toward the limit of
    /// invalid frames), rather than refused for who sent it or for the
    /// state of the service.
    pub fn is_invalid(&self) -> bool {
        !matches!(
            self,
            FrameError::Forbidden(_) | FrameError::TooManyTopics(_) | FrameError::Unavailable(_)
        )
    }
}

#[derive(Deserialize)]
struct Tagged<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<std::borrow::Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Auth {
    token: String,
}

#[derive(Deserialize)]
struct Ids {
    ids: Vec<u64>,
}

#[derive(Deserialize)]
struct Resume {
    after: u64,
}

#[derive(Deserialize)]
struct Topic {
    topic: String,
}

#[derive(Deserialize)]
struct MessageSend {
    conversation_id: u64,
    body: String,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    attachments: Vec<Attachment>,
}

#[derive(Deserialize)]
struct Typing {
    conversation_id: u64,
}

#[derive(Deserialize)]
struct MessageRead {
    conversation_id: u64,
    up_to: u64,
}

#[derive(Deserialize)]
struct Publish {
    topic: String,
    event: String,
    data: Box<RawValue>,
}

fn ids(text: &str) -> Result<Vec<u64>, FrameError> {
    let Ids { ids } = serde_json::from_str(text).map_err(|e| FrameError::Invalid(e.to_string()))?;
    if ids.is_empty() || ids.len() > MAX_IDS_PER_FRAME {
        return Err(FrameError::Invalid(format!(
            "ids must list 1 to {MAX_IDS_PER_FRAME} notification ids"
        )));
    }
    Ok(ids)
}

impl ClientFrame {
    pub fn parse(text: &str) -> Result<ClientFrame, FrameError> {
        let tagged: Tagged = serde_json::from_str(text).map_err(|e| {
            if e.is_data() {
                FrameError::Invalid("a frame is a JSON object with a string \"type\"".into())
            } else {
                FrameError::Malformed
            }
        })?;
        let invalid = |e: serde_json::Error| FrameError::Invalid(e.to_string());
        match tagged.kind.as_deref() {
            Some("auth") => {
                let auth: Auth = serde_json::from_str(text).map_err(invalid)?;
                Ok(ClientFrame::Auth { token: auth.token })
            }
            Some("ping") => Ok(ClientFrame::Ping),
            Some("refresh") => {
                let auth: Auth = serde_json::from_str(text).map_err(invalid)?;
                Ok(ClientFrame::Refresh { token: auth.token })
            }
            Some("read") => Ok(ClientFrame::Read { ids: ids(text)? }),
            Some("ack") => Ok(ClientFrame::Ack { ids: ids(text)? }),
            Some("read_all") => Ok(ClientFrame::ReadAll),
            Some("resume") => {
                let Resume { after } = serde_json::from_str(text).map_err(invalid)?;
                Ok(ClientFrame::Resume { after })
            }
            Some("subscribe") => {
                let Topic { topic } = serde_json::from_str(text).map_err(invalid)?;
                Ok(ClientFrame::Topic(Box::new(TopicRequest::Subscribe {
                    topic,
                })))
            }
            Some("unsubscribe") => {
                let Topic { topic } = serde_json::from_str(text).map_err(invalid)?;
                Ok(ClientFrame::Topic(Box::new(TopicRequest::Unsubscribe {
                    topic,
                })))
            }
            Some("publish") => {
                let Publish { topic, event, data } = serde_json::from_str(text).map_err(invalid)?;
                if !crate::names::valid_event_name(&event) {
                    return Err(FrameError::Invalid(
                        "an event name is 1 to 128 characters of A-Z a-z 0-9 _ . : / -".into(),
                    ));
                }
                Ok(ClientFrame::Topic(Box::new(TopicRequest::Publish {
                    topic,
                    event,
                    data: RawJson(data),
                })))
            }
            Some("message.send") => {
                let MessageSend {
                    conversation_id,
                    body,
                    client_id,
                    attachments,
                } = serde_json::from_str(text).map_err(invalid)?;
                Ok(ClientFrame::Chat(Box::new(ChatRequest::Send {
                    conversation_id,
                    draft: Draft {
                        body,
                        client_id,
                        attachments,
                    },
                })))
            }
            Some("typing") => {
                let Typing { conversation_id } = serde_json::from_str(text).map_err(invalid)?;
                Ok(ClientFrame::Chat(Box::new(ChatRequest::Typing {
                    conversation_id,
                })))
            }
            Some("message.read") => {
                let MessageRead {
                    conversation_id,
                    up_to,
                } = serde_json::from_str(text).map_err(invalid)?;
                Ok(ClientFrame::Chat(Box::new(ChatRequest::Read {
                    conversation_id,
                    up_to,
                })))
            }
            Some(_) => Err(FrameError::UnknownType),
            None => Err(FrameError::Invalid("missing \"type\"".into())),
        }
    }
}

/// A frame the gateway writes itself.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    /// The connection is authenticated and its user's channel subscribed.
    Welcome {
        session_id: &'a str,
        node: &'a str,
        heartbeat_s: u64,
        /// None when MySQL could not be asked.
        unread_count: Option<u64>,
    },
    /// A client frame was refused; the connection stays open. `topic`
    /// names the topic a refused topic request was about.
    Error {
        code: &'a str,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        topic: Option<&'a str>,
    },
    /// The connection now receives the topic's events; `snapshot` is its
    /// retained event, if any.
    Subscribed {
        topic: &'a str,
        snapshot: Option<&'a RawValue>,
    },
    Unsubscribed {
        topic: &'a str,
    },
    /// Ends a catch-up batch: `count` notifications were sent; `truncated`
    /// means older ones exist, to be paged through the api before
    /// `oldest_id`.
    Resumed {
        count: usize,
        truncated: bool,
        oldest_id: Option<u64>,
        /// The user's unread notifications, read in the same snapshot as
        /// the batch: a client sets its count to it and adds what arrives
        /// after (a count taken at `welcome` can miss or double one that
        /// committed in between).
        unread_count: u64,
    },
    /// A `refresh` frame was accepted: the connection now lasts until
    /// `expires_at` (Unix seconds).
    Refreshed {
        expires_at: u64,
    },
    /// The answer to a client `ping` frame.
    Pong,
}

impl ServerFrame<'_> {
    pub fn to_frame(&self) -> String {
        // Plain strings and numbers: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }
}

/// The id of a `notification` frame, if it is one.
pub fn notification_id(frame: &str) -> Option<u64> {
    // The api writes this prefix; anything else is parsed properly.
    const PREFIX: &str = r#"{"type":"notification","notification":{"id":"#;
    if let Some(rest) = frame.strip_prefix(PREFIX) {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        return rest[..digits].parse().ok();
    }
    // Every other frame the services write starts with its type: events
    // and presence frames are not parsed for an id they cannot have.
    if let Some(kind) = frame.strip_prefix(r#"{"type":""#) {
        if !kind.starts_with(r#"notification""#) {
            return None;
        }
    }
    #[derive(Deserialize)]
    struct Frame {
        #[serde(rename = "type")]
        kind: String,
        notification: Option<Inner>,
    }
    #[derive(Deserialize)]
    struct Inner {
        id: u64,
    }
    let frame: Frame = serde_json::from_str(frame).ok()?;
    (frame.kind == "notification").then_some(frame.notification?.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_client_frames() {
        assert_eq!(
            ClientFrame::parse(r#"{"type":"ping"}"#),
            Ok(ClientFrame::Ping)
        );
        assert_eq!(
            ClientFrame::parse(r#"{"type":"read","ids":[1,2]}"#),
            Ok(ClientFrame::Read { ids: vec![1, 2] })
        );
        assert_eq!(
            ClientFrame::parse(r#"{"type":"read_all"}"#),
            Ok(ClientFrame::ReadAll)
        );
        assert_eq!(
            ClientFrame::parse(r#"{"type":"auth","token":"t"}"#),
            Ok(ClientFrame::Auth { token: "t".into() })
        );
        assert_eq!(
            ClientFrame::parse(r#"{"type":"subscribe","topic":"status"}"#),
            Ok(ClientFrame::Topic(Box::new(TopicRequest::Subscribe {
                topic: "status".into()
            })))
        );
        let Ok(ClientFrame::Topic(request)) = ClientFrame::parse(
            r#"{"type":"publish","topic":"status","event":"admin:refresh","data":{"a": [1]}}"#,
        ) else {
            panic!("publish frame")
        };
        let TopicRequest::Publish { topic, event, data } = *request else {
            panic!("publish frame")
        };
        assert_eq!(
            (topic.as_str(), event.as_str()),
            ("status", "admin:refresh")
        );
        assert_eq!(data.0.get(), r#"{"a": [1]}"#);
        assert_eq!(
            ClientFrame::parse(
                r#"{"type":"message.send","conversation_id":3,"body":"hi","client_id":"c1"}"#
            ),
            Ok(ClientFrame::Chat(Box::new(ChatRequest::Send {
                conversation_id: 3,
                draft: Draft {
                    body: "hi".into(),
                    client_id: Some("c1".into()),
                    attachments: Vec::new()
                }
            })))
        );
        assert_eq!(
            ClientFrame::parse(r#"{"type":"typing","conversation_id":3}"#),
            Ok(ClientFrame::Chat(Box::new(ChatRequest::Typing {
                conversation_id: 3
            })))
        );
        assert_eq!(
            ClientFrame::parse(r#"{"type":"message.read","conversation_id":3,"up_to":9}"#),
            Ok(ClientFrame::Chat(Box::new(ChatRequest::Read {
                conversation_id: 3,
                up_to: 9
            })))
        );
    }

    #[test]
    fn refuses_bad_frames() {
        assert_eq!(ClientFrame::parse("{nope"), Err(FrameError::Malformed));
        assert_eq!(ClientFrame::parse(""), Err(FrameError::Malformed));
        assert_eq!(
            ClientFrame::parse(r#"{"type":"dance"}"#),
            Err(FrameError::UnknownType)
        );
        for bad in [
            r#"[1]"#,
            r#"{"type":7}"#,
            r#"{}"#,
            r#"{"type":"read","ids":[]}"#,
            r#"{"type":"read","ids":["1"]}"#,
            r#"{"type":"read","ids":[-1]}"#,
            r#"{"type":"auth"}"#,
            r#"{"type":"resume"}"#,
            r#"{"type":"resume","after":"x"}"#,
            r#"{"type":"ack","ids":[]}"#,
            r#"{"type":"subscribe"}"#,
            r#"{"type":"subscribe","topic":1}"#,
            r#"{"type":"unsubscribe"}"#,
            r#"{"type":"publish","topic":"t","event":"e"}"#,
            r#"{"type":"publish","topic":"t","event":"a b","data":1}"#,
            r#"{"type":"publish","topic":"t","event":"","data":1}"#,
            r#"{"type":"message.send","body":"x"}"#,
            r#"{"type":"message.send","conversation_id":-1,"body":"x"}"#,
            r#"{"type":"message.send","conversation_id":1}"#,
            r#"{"type":"message.send","conversation_id":1,"body":"x","attachments":[{"url":"u"}]}"#,
            r#"{"type":"typing"}"#,
            r#"{"type":"message.read","conversation_id":1}"#,
        ] {
            assert!(
                matches!(ClientFrame::parse(bad), Err(FrameError::Invalid(_))),
                "{bad}"
            );
        }
    }
}

#[cfg(test)]
mod server_frame_tests {
    use super::ServerFrame;

    #[test]
    fn server_frames_carry_their_type() {
        assert_eq!(ServerFrame::Pong.to_frame(), r#"{"type":"pong"}"#);
        assert_eq!(
            ServerFrame::Error {
                code: "c",
                message: "m",
                topic: None
            }
            .to_frame(),
            r#"{"type":"error","code":"c","message":"m"}"#
        );
        assert_eq!(
            ServerFrame::Resumed {
                count: 2,
                truncated: false,
                oldest_id: None,
                unread_count: 5,
            }
            .to_frame(),
            r#"{"type":"resumed","count":2,"truncated":false,"oldest_id":null,"unread_count":5}"#
        );
        let snapshot =
            serde_json::value::RawValue::from_string(r#"{"type":"event"}"#.into()).unwrap();
        assert_eq!(
            ServerFrame::Subscribed {
                topic: "status",
                snapshot: Some(&snapshot)
            }
            .to_frame(),
            r#"{"type":"subscribed","topic":"status","snapshot":{"type":"event"}}"#
        );
        assert_eq!(
            ServerFrame::Error {
                code: "forbidden",
                message: "m",
                topic: Some("status")
            }
            .to_frame(),
            r#"{"type":"error","code":"forbidden","message":"m","topic":"status"}"#
        );
    }
}

#[cfg(test)]
mod id_tests {
    use super::notification_id;

    #[test]
    fn finds_notification_ids() {
        assert_eq!(
            notification_id(r#"{"type":"notification","notification":{"id":42,"user_id":"a"}}"#),
            Some(42)
        );
        assert_eq!(
            notification_id(r#"{ "notification": {"user_id":"a","id":7}, "type":"notification"}"#),
            Some(7)
        );
        assert_eq!(notification_id(r#"{"type":"read","ids":[1]}"#), None);
        assert_eq!(notification_id("garbage"), None);
        assert_eq!(
            notification_id(r#"{"type":"event","event":"e","data":{"notification":{"id":1}}}"#),
            None
        );
        assert_eq!(
            notification_id(r#"{"type":"notification","x":1,"notification":{"id":9}}"#),
            Some(9)
        );
    }
}

/// Any text at all gets a frame or an error, never a panic.
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use super::*;

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<u64>().prop_map(serde_json::Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(serde_json::Value::from),
            prop_oneof![
                Just("auth"),
                Just("ping"),
                Just("read"),
                Just("read_all"),
                Just("resume"),
                Just("ack"),
                Just("subscribe"),
                Just("publish"),
                Just("message.send"),
                Just("typing"),
                Just("message.read"),
                Just("type"),
                Just("ids"),
                Just("after"),
            ]
            .prop_map(serde_json::Value::from),
            ".*".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(serde_json::Value::from),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("type".to_string()),
                        Just("ids".to_string()),
                        Just("after".to_string()),
                        Just("token".to_string()),
                        ".*"
                    ],
                    inner,
                    0..6
                )
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_text_never_panics(text in ".*") {
            let _ = ClientFrame::parse(&text);
            let _ = notification_id(&text);
        }

        #[test]
        fn arbitrary_json_is_a_frame_or_an_error(value in json_value()) {
            let text = value.to_string();
            match ClientFrame::parse(&text) {
                Ok(ClientFrame::Read { ids }) | Ok(ClientFrame::Ack { ids }) => {
                    prop_assert!(!ids.is_empty() && ids.len() <= MAX_IDS_PER_FRAME)
                }
                Ok(_) => {}
                Err(error) => prop_assert!(!error.code().is_empty()),
            }
            let _ = notification_id(&text);
        }

        #[test]
        fn deep_nesting_is_refused_not_overflowed(depth in 0usize..10_000) {
            let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            let _ = ClientFrame::parse(&text);
        }
    }
}
