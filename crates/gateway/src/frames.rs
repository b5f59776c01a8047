//! Frames a client may send, and the frames the gateway itself writes
//! (events published by the api are forwarded untouched and are not built
//! here). The format is specified in `docs/protocol.md`.

use serde::Deserialize;
use serde_json::json;

/// Most ids in one `read` frame.
pub const MAX_IDS_PER_FRAME: usize = 1000;

#[derive(Debug, PartialEq, Eq)]
pub enum ClientFrame {
    Auth { token: String },
    Ping,
    Read { ids: Vec<u64> },
    ReadAll,
}

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
}

impl FrameError {
    pub fn code(&self) -> &'static str {
        match self {
            FrameError::Malformed => "malformed_frame",
            FrameError::UnknownType => "unknown_type",
            FrameError::Invalid(_) => "invalid_frame",
            FrameError::Binary => "unsupported_frame",
        }
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
            Some("read") => {
                let Ids { ids } = serde_json::from_str(text).map_err(invalid)?;
                if ids.is_empty() || ids.len() > MAX_IDS_PER_FRAME {
                    return Err(FrameError::Invalid(format!(
                        "ids must list 1 to {MAX_IDS_PER_FRAME} notification ids"
                    )));
                }
                Ok(ClientFrame::Read { ids })
            }
            Some("read_all") => Ok(ClientFrame::ReadAll),
            Some(_) => Err(FrameError::UnknownType),
            None => Err(FrameError::Invalid("missing \"type\"".into())),
        }
    }
}

pub fn welcome(
    session_id: &str,
    node: &str,
    heartbeat_s: u64,
    unread_count: Option<u64>,
) -> String {
    json!({
        "type": "welcome",
        "session_id": session_id,
        "node": node,
        "heartbeat_s": heartbeat_s,
        "unread_count": unread_count,
    })
    .to_string()
}

pub fn error(code: &str, message: &str) -> String {
    json!({"type": "error", "code": code, "message": message}).to_string()
}

pub fn pong() -> &'static str {
    r#"{"type":"pong"}"#
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
        ] {
            assert!(
                matches!(ClientFrame::parse(bad), Err(FrameError::Invalid(_))),
                "{bad}"
            );
        }
    }
}
