//! Messages on the control channel, which every gateway listens on: the api
//! publishes one when tokens are revoked, and each gateway closes the local
//! connections they affect.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Control {
    /// Close every connection of `user`.
    DisconnectUser { user: String },
    /// Close every connection authenticated with the token whose `jti` this
    /// is.
    RevokeToken { jti: String },
    /// Close `user`'s connection with this session id (the user signed it
    /// out).
    CloseSession { user: String, session: String },
    /// Close every connection of `user` but the one with session `keep`.
    CloseOtherSessions { user: String, keep: String },
}

impl Control {
    pub fn to_message(&self) -> String {
        // Plain strings only: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn parse(message: &[u8]) -> Option<Self> {
        serde_json::from_slice(message).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for control in [
            Control::DisconnectUser { user: "a".into() },
            Control::RevokeToken { jti: "j".into() },
            Control::CloseSession {
                user: "a".into(),
                session: "s".into(),
            },
            Control::CloseOtherSessions {
                user: "a".into(),
                keep: "s".into(),
            },
        ] {
            assert_eq!(
                Control::parse(control.to_message().as_bytes()),
                Some(control)
            );
        }
        assert_eq!(Control::parse(b"{\"op\":\"other\"}"), None);
    }
}
