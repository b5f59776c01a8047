//! Socket.IO v5 over Engine.IO v4, the WebSocket transport only: what the
//! gateway reads from and writes to a `socket.io-client` (the namespace
//! `/`, text packets; binary packets are refused).
//!
//! Each WebSocket text frame is one Engine.IO packet: a type digit (`0`
//! open, `1` close, `2` ping, `3` pong, `4` message, `5` upgrade, `6` noop)
//! and its data. A message carries one Socket.IO packet: a type digit (`0`
//! CONNECT, `1` DISCONNECT, `2` EVENT, `3` ACK, `4` CONNECT_ERROR, `5`/`6`
//! binary), an optional `/namespace,`, an optional ack id and JSON.
//!
//! Server frames of the native protocol are translated here into events
//! (see [`translate`]); client events into native client frames (see
//! [`Request::native`]), so everything behind them is the native path.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

/// A packet a client sent. (`Debug` leaves out the CONNECT's `auth`: it
/// holds the token.)
pub enum Incoming {
    /// The answer to the server's ping.
    Pong,
    /// A ping of the client's (Engine.IO v3 clients, `2probe` while
    /// upgrading): answered with a pong carrying the same data.
    Ping(String),
    /// Engine.IO close: the client is going away.
    Close,
    /// Engine.IO noop and upgrade: nothing to do.
    Noop,
    /// CONNECT to the namespace `/`, with the client's `auth` object, if any
    /// (the raw JSON: its fields are read by [`ConnectAuth::parse`]).
    Connect { auth: Option<String> },
    /// CONNECT to another namespace: refused with a CONNECT_ERROR there.
    ConnectElsewhere { namespace: String },
    /// DISCONNECT from the namespace `/`.
    Disconnect,
    /// An EVENT: its name, its arguments (raw JSON each) and the ack id the
    /// client waits on, if any.
    Event {
        name: String,
        args: Vec<Box<RawValue>>,
        ack: Option<u64>,
    },
    /// An ACK of the client's: the server never asks for one, so ignored.
    Ack,
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Incoming::Pong => f.write_str("Pong"),
            Incoming::Ping(data) => write!(f, "Ping({data:?})"),
            Incoming::Close => f.write_str("Close"),
            Incoming::Noop => f.write_str("Noop"),
            Incoming::Connect { auth } => {
                write!(
                    f,
                    "Connect {{ auth: {} }}",
                    if auth.is_some() { "<given>" } else { "none" }
                )
            }
            Incoming::ConnectElsewhere { namespace } => {
                write!(f, "ConnectElsewhere({namespace:?})")
            }
            Incoming::Disconnect => f.write_str("Disconnect"),
            Incoming::Event { name, args, ack } => {
                write!(
                    f,
                    "Event {{ name: {name:?}, args: {}, ack: {ack:?} }}",
                    args.len()
                )
            }
            Incoming::Ack => f.write_str("Ack"),
        }
    }
}

/// Why a packet was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum PacketError {
    /// Not an Engine.IO / Socket.IO packet this server reads.
    Malformed(&'static str),
    /// A binary event or ack (or a binary WebSocket frame).
    Binary,
}

impl PacketError {
    pub fn message(&self) -> &'static str {
        match self {
            PacketError::Malformed(why) => why,
            PacketError::Binary => "binary events are not supported",
        }
    }
}

/// Reads one WebSocket text frame.
pub fn parse(text: &str) -> Result<Incoming, PacketError> {
    let mut chars = text.chars();
    let engine = chars.next().ok_or(PacketError::Malformed("empty packet"))?;
    let data = chars.as_str();
    match engine {
        '1' => Ok(Incoming::Close),
        '2' => Ok(Incoming::Ping(data.to_owned())),
        '3' => Ok(Incoming::Pong),
        '5' | '6' => Ok(Incoming::Noop),
        '4' => parse_socket(data),
        _ => Err(PacketError::Malformed("unknown Engine.IO packet type")),
    }
}

fn parse_socket(packet: &str) -> Result<Incoming, PacketError> {
    let mut chars = packet.chars();
    let kind = chars
        .next()
        .ok_or(PacketError::Malformed("empty message"))?;
    let mut rest = chars.as_str();
    if matches!(kind, '5' | '6') {
        return Err(PacketError::Binary);
    }
    // `/namespace,` when not the main namespace.
    let mut namespace = "/";
    if rest.starts_with('/') {
        let end = rest
            .find(',')
            .ok_or(PacketError::Malformed("a namespace ends with a comma"))?;
        namespace = &rest[..end];
        rest = &rest[end + 1..];
    }
    // An ack id: the digits before the JSON.
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let ack = if digits > 0 {
        Some(
            rest[..digits]
                .parse::<u64>()
                .map_err(|_| PacketError::Malformed("ack id out of range"))?,
        )
    } else {
        None
    };
    let json = &rest[digits..];
    match kind {
        '0' if namespace != "/" => Ok(Incoming::ConnectElsewhere {
            namespace: namespace.to_owned(),
        }),
        '0' => {
            if json.is_empty() {
                return Ok(Incoming::Connect { auth: None });
            }
            let auth: Box<RawValue> = serde_json::from_str(json)
                .map_err(|_| PacketError::Malformed("the CONNECT payload is not JSON"))?;
            if !auth.get().starts_with('{') {
                return Err(PacketError::Malformed(
                    "the CONNECT payload is not an object",
                ));
            }
            Ok(Incoming::Connect {
                auth: Some(auth.get().to_owned()),
            })
        }
        _ if namespace != "/" => Err(PacketError::Malformed("only the namespace / is served")),
        '1' => Ok(Incoming::Disconnect),
        '2' => {
            let mut args: Vec<Box<RawValue>> = serde_json::from_str(json)
                .map_err(|_| PacketError::Malformed("an EVENT is a JSON array"))?;
            if args.is_empty() {
                return Err(PacketError::Malformed("an EVENT names its event first"));
            }
            let name: String = serde_json::from_str(args.remove(0).get())
                .map_err(|_| PacketError::Malformed("an event name is a string"))?;
            Ok(Incoming::Event { name, args, ack })
        }
        '3' => Ok(Incoming::Ack),
        _ => Err(PacketError::Malformed("unknown Socket.IO packet type")),
    }
}

/// What a client may put in its CONNECT packet's `auth`.
#[derive(Default, Deserialize, PartialEq, Eq)]
pub struct ConnectAuth {
    /// The user's JWT (also accepted as `?token=` or an `Authorization`
    /// header on the upgrade).
    pub token: Option<String>,
    /// The highest notification id the client holds: what it missed is
    /// sent first (a resume).
    pub after: Option<u64>,
}

impl ConnectAuth {
    /// Unknown fields are ignored (apps put their own things in `auth`).
    /// `after: 0` (an app's "nothing yet") is no resume: ids start at 1,
    /// and a resume from 0 would replay the newest notifications as new.
    pub fn parse(auth: Option<&str>) -> Result<ConnectAuth, String> {
        let mut auth: ConnectAuth = match auth {
            None => ConnectAuth::default(),
            Some(json) => serde_json::from_str(json).map_err(|e| e.to_string())?,
        };
        auth.after = auth.after.filter(|after| *after > 0);
        Ok(auth)
    }
}

impl std::fmt::Debug for ConnectAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectAuth")
            .field("token", &self.token.as_ref().map(|_| "<given>"))
            .field("after", &self.after)
            .finish()
    }
}

/// Engine.IO's open packet, the first frame of a connection.
pub fn open_packet(
    sid: &str,
    ping_interval_ms: u64,
    ping_timeout_ms: u64,
    max_payload: usize,
) -> String {
    format!(
        "0{}",
        json!({
            "sid": sid,
            "upgrades": [],
            "pingInterval": ping_interval_ms,
            "pingTimeout": ping_timeout_ms,
            "maxPayload": max_payload,
        })
    )
}

/// The server's ping.
pub const PING: &str = "2";
/// DISCONNECT of the namespace `/`: the client does not reconnect by
/// itself after it.
pub const DISCONNECT: &str = "41";

/// The answer to a client's ping.
pub fn pong(data: &str) -> String {
    format!("3{data}")
}

/// CONNECT accepted.
pub fn connected(sid: &str) -> String {
    format!("40{}", json!({ "sid": sid }))
}

/// CONNECT refused: `socket.io-client` emits `connect_error` with an
/// `Error` whose `message` is `message` (a stable error code here), and
/// does not reconnect by itself.
pub fn connect_error(namespace: &str, message: &str) -> String {
    let payload = json!({ "message": message });
    if namespace == "/" {
        format!("44{payload}")
    } else {
        format!("44{namespace},{payload}")
    }
}

/// An EVENT with these (JSON) arguments.
pub fn event(name: &str, args: &[&str]) -> String {
    let mut packet =
        String::with_capacity(8 + name.len() + args.iter().map(|a| a.len() + 1).sum::<usize>());
    packet.push_str("42[");
    packet.push_str(&Value::String(name.to_owned()).to_string());
    for arg in args {
        packet.push(',');
        packet.push_str(arg);
    }
    packet.push(']');
    packet
}

/// The ACK of the client's event `id`.
pub fn ack(id: u64, payload: &Value) -> String {
    format!("43{id}[{payload}]")
}

/// The event name a new notification is emitted under: deployments moving
/// from a Socket.IO server keep the name their frontends listen to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotificationEvent {
    NewNotification,
    Notification,
    NotificationNew,
}

impl NotificationEvent {
    pub fn name(self) -> &'static str {
        match self {
            NotificationEvent::NewNotification => "new_notification",
            NotificationEvent::Notification => "notification",
            NotificationEvent::NotificationNew => "notification:new",
        }
    }
}

impl std::str::FromStr for NotificationEvent {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        [
            NotificationEvent::NewNotification,
            NotificationEvent::Notification,
            NotificationEvent::NotificationNew,
        ]
        .into_iter()
        .find(|event| event.name() == name)
        .ok_or_else(|| {
            format!("{name:?} is not one of new_notification, notification, notification:new")
        })
    }
}

/// How every `notification` frame starts (`Event::Notification`).
const NOTIFICATION_PREFIX: &str = r#"{"type":"notification","#;

#[derive(Deserialize)]
struct NotificationFrame<'a> {
    #[serde(borrow)]
    notification: &'a RawValue,
}

#[derive(Deserialize)]
struct EventData<'a> {
    #[serde(borrow)]
    data: &'a RawValue,
}

/// Names `socket.io-client` refuses to receive (it drops the connection
/// with a parse error), and the names of the gateway's own events: an
/// event a sender named so goes out as `event:<name>` instead, so a topic
/// publisher can neither break subscribers nor pass for the gateway.
const RESERVED: &[&str] = &[
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
    "new_notification",
    "notification",
    "notification:new",
    "notification_read",
    "all_notifications_read",
    "notification_deleted",
    "welcome",
    "resumed",
    "error",
];

/// The Socket.IO packets for one server frame of the native protocol:
///
/// - `notification` → the notification under `notification_event`;
/// - `read` → `notification_read` `{"ids"}`, `read_all` →
///   `all_notifications_read` `{"up_to"}`, `deleted` →
///   `notification_deleted` `{"ids"}`;
/// - `event` → its own event name with its `data`, and a second argument
///   with the rest (`topic` or `roles`, `id`, `sent_at`, `from`);
/// - `welcome` → the CONNECT answer (`sid` = the session id) and a
///   `welcome` event with the rest;
/// - `subscribed` → its snapshot's event, if the topic has one;
/// - any other frame → an event named by its `type`, with the other fields.
pub fn translate(frame: &str, notification_event: NotificationEvent) -> Vec<String> {
    // The hot path, as the api serialises it: the notification is cut out
    // without being parsed.
    if frame.starts_with(NOTIFICATION_PREFIX) {
        if let Ok(NotificationFrame { notification }) = serde_json::from_str(frame) {
            return vec![event(notification_event.name(), &[notification.get()])];
        }
        return Vec::new();
    }
    let Ok(mut fields) = serde_json::from_str::<Map<String, Value>>(frame) else {
        return Vec::new();
    };
    let kind = match fields.remove("type") {
        Some(Value::String(kind)) => kind,
        _ => return Vec::new(),
    };
    match kind.as_str() {
        "notification" => match fields.remove("notification") {
            Some(notification) => vec![event(
                notification_event.name(),
                &[&notification.to_string()],
            )],
            None => Vec::new(),
        },
        "read" => vec![event(
            "notification_read",
            &[&Value::Object(fields).to_string()],
        )],
        "read_all" => vec![event(
            "all_notifications_read",
            &[&Value::Object(fields).to_string()],
        )],
        "deleted" => vec![event(
            "notification_deleted",
            &[&Value::Object(fields).to_string()],
        )],
        "event" => {
            let name = match fields.remove("event") {
                Some(Value::String(name)) => name,
                _ => return Vec::new(),
            };
            // `data` as the sender wrote it (numbers beyond 64 bits, key
            // order), as native clients get it.
            let Ok(EventData { data }) = serde_json::from_str::<EventData>(frame) else {
                return Vec::new();
            };
            fields.remove("data");
            let meta = Value::Object(fields).to_string();
            if RESERVED.contains(&name.as_str()) {
                return vec![event(&format!("event:{name}"), &[data.get(), &meta])];
            }
            vec![event(&name, &[data.get(), &meta])]
        }
        "welcome" => {
            let sid = fields
                .get("session_id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            vec![
                connected(&sid),
                event("welcome", &[&Value::Object(fields).to_string()]),
            ]
        }
        // The answer to a `subscribe:<topic>` is its acknowledgement; the
        // retained snapshot follows as the event it is.
        "subscribed" => match fields.remove("snapshot") {
            Some(snapshot @ Value::Object(_)) => {
                translate(&snapshot.to_string(), notification_event)
            }
            _ => Vec::new(),
        },
        other => vec![event(other, &[&Value::Object(fields).to_string()])],
    }
}

/// A client event as the native protocol's client frame (JSON text, for
/// [`crate::ClientFrame::parse`], which validates it like any frame):
///
/// - `mark_notification_read` / `notification:read` (an id, or `{"id"}`,
///   or a list of ids) → `read`;
/// - `mark_all_read` → `read_all`;
/// - `subscribe:status` / `unsubscribe:status`, `subscribe:<topic>` /
///   `unsubscribe:<topic>` → `subscribe` / `unsubscribe` of the topic;
/// - a native frame type (`read`, `ack`, `resume`, `refresh`, `ping`,
///   `subscribe`, `unsubscribe`, `publish`, `message.send`, `typing`,
///   `message.read`, ...) with an object → that frame.
///
/// `None`: not an event this server knows.
pub fn native_frame(name: &str, args: &[Box<RawValue>]) -> Option<String> {
    let first = args.first().map(|a| a.get());
    match name {
        "mark_notification_read" | "notification:read" => {
            let ids = match first.map(serde_json::from_str::<Value>) {
                Some(Ok(Value::Array(ids))) => ids,
                Some(Ok(Value::Object(mut fields))) => {
                    vec![fields.remove("id").unwrap_or(Value::Null)]
                }
                Some(Ok(id)) => vec![id],
                _ => Vec::new(),
            };
            // Apps often hold ids as strings ("42").
            let ids: Vec<Value> = ids
                .into_iter()
                .map(|id| match &id {
                    Value::String(text) => text.parse::<u64>().map(Value::from).unwrap_or(id),
                    _ => id,
                })
                .collect();
            Some(json!({ "type": "read", "ids": ids }).to_string())
        }
        "mark_all_read" => Some(json!({ "type": "read_all" }).to_string()),
        _ => {
            if let Some(topic) = name.strip_prefix("subscribe:") {
                return Some(json!({ "type": "subscribe", "topic": topic }).to_string());
            }
            if let Some(topic) = name.strip_prefix("unsubscribe:") {
                return Some(json!({ "type": "unsubscribe", "topic": topic }).to_string());
            }
            let mut fields = match first.map(serde_json::from_str::<Value>) {
                None => Map::new(),
                Some(Ok(Value::Object(fields))) => fields,
                Some(_) => return None,
            };
            fields.insert("type".into(), Value::String(name.to_owned()));
            Some(Value::Object(fields).to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event_of(text: &str) -> (String, Vec<String>, Option<u64>) {
        match parse(text) {
            Ok(Incoming::Event { name, args, ack }) => {
                (name, args.iter().map(|a| a.get().to_owned()).collect(), ack)
            }
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn engine_packets() {
        assert!(matches!(parse("3"), Ok(Incoming::Pong)));
        assert!(matches!(parse("2probe"), Ok(Incoming::Ping(data)) if data == "probe"));
        assert!(matches!(parse("1"), Ok(Incoming::Close)));
        assert!(matches!(parse("6"), Ok(Incoming::Noop)));
        assert!(matches!(parse(""), Err(PacketError::Malformed(_))));
        assert!(matches!(parse("9"), Err(PacketError::Malformed(_))));
        assert!(matches!(parse("é"), Err(PacketError::Malformed(_))));
    }

    #[test]
    fn connect_with_and_without_auth() {
        assert!(matches!(parse("40"), Ok(Incoming::Connect { auth: None })));
        let Ok(Incoming::Connect { auth }) = parse(r#"40{"token":"t","after":41,"app":"x"}"#)
        else {
            panic!()
        };
        assert_eq!(
            ConnectAuth::parse(auth.as_deref()),
            Ok(ConnectAuth {
                token: Some("t".into()),
                after: Some(41)
            })
        );
        assert!(ConnectAuth::parse(Some(r#"{"after":-1}"#)).is_err());
        assert_eq!(
            ConnectAuth::parse(Some(r#"{"after":0}"#)).map(|a| a.after),
            Ok(None)
        );
        assert_eq!(
            format!("{:?}", ConnectAuth::parse(Some(r#"{"token":"secret"}"#))),
            r#"Ok(ConnectAuth { token: Some("<given>"), after: None })"#
        );
        assert!(matches!(
            parse(r#"40"token""#),
            Err(PacketError::Malformed(_))
        ));
        assert!(matches!(
            parse("40/admin,"),
            Ok(Incoming::ConnectElsewhere { namespace }) if namespace == "/admin"
        ));
        assert!(matches!(parse("41"), Ok(Incoming::Disconnect)));
    }

    #[test]
    fn events_with_and_without_acks() {
        assert_eq!(
            event_of(r#"42["mark_all_read"]"#),
            ("mark_all_read".into(), vec![], None)
        );
        assert_eq!(
            event_of(r#"4217["mark_notification_read",42]"#),
            ("mark_notification_read".into(), vec!["42".into()], Some(17))
        );
        assert!(matches!(parse(r#"42[]"#), Err(PacketError::Malformed(_))));
        assert!(matches!(parse(r#"42[1]"#), Err(PacketError::Malformed(_))));
        assert!(matches!(
            parse(r#"42{"a":1}"#),
            Err(PacketError::Malformed(_))
        ));
        assert!(matches!(
            parse(r#"42/admin,["x"]"#),
            Err(PacketError::Malformed(_))
        ));
        assert!(matches!(
            parse(r#"4299999999999999999999["x"]"#),
            Err(PacketError::Malformed(_))
        ));
        assert!(matches!(
            parse(r#"451-["upload",{"_placeholder":true,"num":0}]"#),
            Err(PacketError::Binary)
        ));
    }

    #[test]
    fn server_frames_become_events() {
        let frame = r#"{"type":"notification","notification":{"id":42,"title":"t"}}"#;
        assert_eq!(
            translate(frame, NotificationEvent::NewNotification),
            vec![r#"42["new_notification",{"id":42,"title":"t"}]"#]
        );
        assert_eq!(
            translate(frame, NotificationEvent::NotificationNew),
            vec![r#"42["notification:new",{"id":42,"title":"t"}]"#]
        );
        // The same frame written another way takes the general path.
        assert_eq!(
            translate(
                r#"{ "notification": {"id":42}, "type": "notification" }"#,
                NotificationEvent::Notification
            ),
            vec![r#"42["notification",{"id":42}]"#]
        );
        assert_eq!(
            translate(
                r#"{"type":"read","ids":[1,2]}"#,
                NotificationEvent::Notification
            ),
            vec![r#"42["notification_read",{"ids":[1,2]}]"#]
        );
        assert_eq!(
            translate(
                r#"{"type":"read_all","up_to":9}"#,
                NotificationEvent::Notification
            ),
            vec![r#"42["all_notifications_read",{"up_to":9}]"#]
        );
        assert_eq!(
            translate(
                r#"{"type":"event","topic":"status","event":"service:status","data":{"state":"ok"},"id":"ab","sent_at":"t"}"#,
                NotificationEvent::Notification
            ),
            vec![
                r#"42["service:status",{"state":"ok"},{"id":"ab","sent_at":"t","topic":"status"}]"#
            ]
        );
        assert_eq!(
            translate(
                r#"{"type":"welcome","session_id":"s1","node":"gw-1","heartbeat_s":25,"unread_count":3}"#,
                NotificationEvent::Notification
            ),
            vec![
                r#"40{"sid":"s1"}"#.to_owned(),
                r#"42["welcome",{"heartbeat_s":25,"node":"gw-1","session_id":"s1","unread_count":3}]"#.to_owned()
            ]
        );
        assert_eq!(
            translate(
                r#"{"type":"error","code":"c","message":"m"}"#,
                NotificationEvent::Notification
            ),
            vec![r#"42["error",{"code":"c","message":"m"}]"#]
        );
        assert!(translate("not json", NotificationEvent::Notification).is_empty());
        // Data as sent; reserved and the gateway's own names moved aside.
        assert_eq!(
            translate(
                r#"{"type":"event","event":"e","data":{"b":123456789012345678901234567890,"a":1},"id":"i","sent_at":"t"}"#,
                NotificationEvent::Notification
            ),
            vec![r#"42["e",{"b":123456789012345678901234567890,"a":1},{"id":"i","sent_at":"t"}]"#]
        );
        for name in ["disconnect", "connect", "new_notification", "welcome"] {
            let frame =
                format!(r#"{{"type":"event","event":"{name}","data":1,"id":"i","sent_at":"t"}}"#);
            assert_eq!(
                translate(&frame, NotificationEvent::NewNotification),
                vec![format!(
                    r#"42["event:{name}",1,{{"id":"i","sent_at":"t"}}]"#
                )]
            );
        }
    }

    #[test]
    fn client_events_become_native_frames() {
        let args = |json: &str| -> Vec<Box<RawValue>> { serde_json::from_str(json).unwrap() };
        assert_eq!(
            native_frame("mark_notification_read", &args("[42]")).as_deref(),
            Some(r#"{"ids":[42],"type":"read"}"#)
        );
        assert_eq!(
            native_frame("notification:read", &args(r#"[{"id":7}]"#)).as_deref(),
            Some(r#"{"ids":[7],"type":"read"}"#)
        );
        assert_eq!(
            native_frame("mark_notification_read", &args(r#"[["42", "x"]]"#)).as_deref(),
            Some(r#"{"ids":[42,"x"],"type":"read"}"#)
        );
        assert_eq!(
            native_frame("mark_all_read", &[]).as_deref(),
            Some(r#"{"type":"read_all"}"#)
        );
        assert_eq!(
            native_frame("subscribe:status", &[]).as_deref(),
            Some(r#"{"topic":"status","type":"subscribe"}"#)
        );
        assert_eq!(
            native_frame("unsubscribe:space:42", &[]).as_deref(),
            Some(r#"{"topic":"space:42","type":"unsubscribe"}"#)
        );
        assert_eq!(
            native_frame("resume", &args(r#"[{"after":5}]"#)).as_deref(),
            Some(r#"{"after":5,"type":"resume"}"#)
        );
        assert_eq!(native_frame("resume", &args("[5]")), None);
    }

    #[test]
    fn outgoing_packets() {
        assert_eq!(
            open_packet("s", 25000, 25000, 65536),
            r#"0{"maxPayload":65536,"pingInterval":25000,"pingTimeout":25000,"sid":"s","upgrades":[]}"#
        );
        assert_eq!(
            connect_error("/", "invalid_token"),
            r#"44{"message":"invalid_token"}"#
        );
        assert_eq!(connect_error("/admin", "x"), r#"44/admin,{"message":"x"}"#);
        assert_eq!(
            ack(3, &json!({"success": true})),
            r#"433[{"success":true}]"#
        );
        assert_eq!(event("a\"b", &[]), r#"42["a\"b"]"#);
    }
}
