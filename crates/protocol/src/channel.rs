//! Naming of everything the services keep in Redis.
//!
//! Every user has one channel, `{prefix}user:{id}`; every gateway also
//! listens on `{prefix}control` for revocations. Keys hold revocations and
//! the ids of signed webhooks already accepted. The prefix lets several
//! deployments (or several test runs) share one Redis without seeing each
//! other's traffic.

/// Builds channel names under one configured prefix.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChannelNames {
    /// Prepended verbatim; empty by default, conventionally ends with `:`.
    prefix: String,
}

impl ChannelNames {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// The channel carrying every event for `user_id`.
    pub fn user(&self, user_id: &str) -> String {
        let mut name = String::with_capacity(self.prefix.len() + 5 + user_id.len());
        name.push_str(&self.prefix);
        name.push_str("user:");
        name.push_str(user_id);
        name
    }

    /// The channel every gateway listens on for revocations.
    pub fn control(&self) -> String {
        format!("{}control", self.prefix)
    }

    pub fn is_control(&self, channel: &str) -> bool {
        channel.strip_prefix(&self.prefix) == Some("control")
    }

    /// Set while the tokens `user` held before a disconnect are refused.
    pub fn revoked_user(&self, user_id: &str) -> String {
        format!("{}revoked:user:{user_id}", self.prefix)
    }

    /// Set while the token with this `jti` is refused.
    pub fn revoked_token(&self, jti: &str) -> String {
        format!("{}revoked:jti:{jti}", self.prefix)
    }

    /// Set while a signed webhook with this id from `sender` is a replay.
    pub fn webhook_id(&self, sender: &str, id: &str) -> String {
        format!("{}webhook:{sender}:{id}", self.prefix)
    }

    /// The user id a channel belongs to, if it is one of ours.
    pub fn user_of<'a>(&self, channel: &'a str) -> Option<&'a str> {
        channel.strip_prefix(&self.prefix)?.strip_prefix("user:")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_channel_round_trips() {
        let names = ChannelNames::new("t1:");
        let channel = names.user("alice:1");
        assert_eq!(channel, "t1:user:alice:1");
        assert_eq!(names.user_of(&channel), Some("alice:1"));
        assert_eq!(names.user_of("t2:user:alice"), None);
        assert_eq!(ChannelNames::default().user("bob"), "user:bob");
        assert_eq!(names.user_of(&names.control()), None);
        assert!(names.is_control("t1:control"));
        assert!(!names.is_control("t2:control"));
    }
}
