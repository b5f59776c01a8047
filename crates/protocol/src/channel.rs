//! Naming of everything the services keep in Redis.
//!
//! Every user has one channel, `{prefix}user:{id}`, every topic one,
//! `{prefix}topic:{name}`, every role one, `{prefix}role:{name}`, and one,
//! `{prefix}all`, reaches every connection; every gateway also listens on
//! `{prefix}control` for revocations. Keys hold revocations and
//! the ids of signed webhooks already accepted. The prefix lets several
//! deployments (or several test runs) share one Redis without seeing each
//! other's traffic.

/// Who a channel's messages are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience<'a> {
    User(&'a str),
    Topic(&'a str),
    Role(&'a str),
    All,
    Control,
}

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

    /// The channel of a topic's events.
    pub fn topic(&self, topic: &str) -> String {
        format!("{}topic:{topic}", self.prefix)
    }

    /// The channel of events for every connection whose token has `role`.
    pub fn role(&self, role: &str) -> String {
        format!("{}role:{role}", self.prefix)
    }

    /// The channel of events for every connection.
    pub fn all(&self) -> String {
        format!("{}all", self.prefix)
    }

    /// The retained event of a topic, sent to every new subscriber.
    pub fn snapshot(&self, topic: &str) -> String {
        format!("{}snapshot:{topic}", self.prefix)
    }

    /// Users present in a topic, with their connections on every node
    /// (maintained by `notify_bus::presence`).
    pub fn presence(&self, topic: &str) -> String {
        format!("{}presence:{topic}", self.prefix)
    }

    /// A user's live sessions (maintained by `notify_bus::sessions`).
    pub fn sessions(&self, user: &str) -> String {
        format!("{}sessions:{user}", self.prefix)
    }

    /// When a user's last connection ended.
    pub fn last_seen(&self, user: &str) -> String {
        format!("{}last-seen:{user}", self.prefix)
    }

    /// Set while a user's typing signal in a conversation was forwarded
    /// less than the throttle interval ago.
    pub fn typing(&self, conversation: u64, user: &str) -> String {
        format!("{}typing:{conversation}:{user}", self.prefix)
    }

    /// Set while a member who was offline was told of a conversation's
    /// messages less than the throttle interval ago.
    pub fn chat_notified(&self, conversation: u64, user: &str) -> String {
        format!("{}chat-notified:{conversation}:{user}", self.prefix)
    }

    /// Gateway processes and when each is considered dead.
    pub fn nodes(&self) -> String {
        format!("{}nodes", self.prefix)
    }

    /// What a channel of ours carries.
    pub fn parse<'a>(&self, channel: &'a str) -> Option<Audience<'a>> {
        let rest = channel.strip_prefix(&self.prefix)?;
        if let Some(user) = rest.strip_prefix("user:") {
            Some(Audience::User(user))
        } else if let Some(topic) = rest.strip_prefix("topic:") {
            Some(Audience::Topic(topic))
        } else if let Some(role) = rest.strip_prefix("role:") {
            Some(Audience::Role(role))
        } else if rest == "all" {
            Some(Audience::All)
        } else if rest == "control" {
            Some(Audience::Control)
        } else {
            None
        }
    }

    /// The prefix, for scripts that build key names themselves.
    pub fn prefix(&self) -> &str {
        &self.prefix
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
        assert_eq!(
            names.parse(&names.topic("space:42")),
            Some(Audience::Topic("space:42"))
        );
        assert_eq!(
            names.parse(&names.role("admin")),
            Some(Audience::Role("admin"))
        );
        assert_eq!(names.parse(&names.all()), Some(Audience::All));
        assert_eq!(names.parse(&channel), Some(Audience::User("alice:1")));
        assert_eq!(names.parse("t1:control"), Some(Audience::Control));
        assert_eq!(names.parse("t2:all"), None);
    }
}
