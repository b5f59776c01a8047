//! Naming of everything the services keep in Redis.
//!
//! Every user has one channel, `<prefix>user:<id>`, every topic one,
//! `<prefix>topic:{<name>}`, every role one, `<prefix>role:<name>`, and one,
//! `<prefix>all`, reaches every connection; every gateway also listens on
//! `<prefix>{notify}control` for revocations and on
//! `<prefix>{notify}presence` for presence changes. The prefix lets several
//! deployments (or several test runs) share one Redis without seeing each
//! other's traffic.
//!
//! The names are laid out for Redis Cluster, and are the same on a single
//! Redis, where the braces mean nothing. In a cluster a name's slot is the
//! hash of its `{hash tag}` when it has one, of the whole name otherwise:
//! - user, role and everyone channels have no tag, so they spread over the
//!   shards;
//! - a topic's channel and its retained snapshot share the topic's tag, so
//!   the snapshot is replaced and the event published in one transaction;
//! - the other keys that scripts or pipelines touch together (gateway
//!   liveness, presence, live sessions, last-seen times, revocations, offline
//!   chat notices) and the control and presence channels share the tag
//!   `{notify}`: one slot, so every script still runs atomically, and a
//!   revocation is recorded and announced in one pipeline.
//! - typing throttles and webhook ids are single keys and spread.

/// Who a channel's messages are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience<'a> {
    User(&'a str),
    Topic(&'a str),
    Role(&'a str),
    All,
    Control,
    /// Presence changes of every presence topic; the frame names its topic.
    Presence,
}

/// Builds channel names under one configured prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelNames {
    /// Prepended verbatim; empty by default, conventionally ends with `:`.
    prefix: String,
    /// `prefix` followed by the shared slot's hash tag: the start of every
    /// key that must live in the one slot scripts work in.
    shared: String,
}

/// The hash tag of the keys and channels that must share one slot.
const SHARED_TAG: &str = "{notify}";

impl Default for ChannelNames {
    fn default() -> Self {
        Self::new("")
    }
}

impl ChannelNames {
    /// Whether `prefix` keeps the slot layout: no hash tag braces.
    pub fn valid_prefix(prefix: &str) -> bool {
        !prefix.contains(['{', '}'])
    }

    pub fn new(prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        Self {
            shared: format!("{prefix}{SHARED_TAG}"),
            prefix,
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
        format!("{}topic:{{{topic}}}", self.prefix)
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
        format!("{}snapshot:{{{topic}}}", self.prefix)
    }

    /// Users present in a topic, with their connections on every node
    /// (maintained by `notify_bus::presence`).
    pub fn presence(&self, topic: &str) -> String {
        format!("{}presence:{topic}", self.shared)
    }

    /// A user's live sessions (maintained by `notify_bus::sessions`).
    pub fn sessions(&self, user: &str) -> String {
        format!("{}sessions:{user}", self.shared)
    }

    /// Set while a user's feed reads must see their own recent changes
    /// (they go to the primary, not a read replica).
    pub fn feed_written(&self, user: &str) -> String {
        format!("{}feed-written:{user}", self.prefix)
    }

    /// When a user's last connection ended.
    pub fn last_seen(&self, user: &str) -> String {
        format!("{}last-seen:{user}", self.shared)
    }

    /// Set while a user's typing signal in a conversation was forwarded
    /// less than the throttle interval ago.
    pub fn typing(&self, conversation: u64, user: &str) -> String {
        format!("{}typing:{conversation}:{user}", self.prefix)
    }

    /// Set while a member who was offline was told of a conversation's
    /// messages less than the throttle interval ago.
    pub fn chat_notified(&self, conversation: u64, user: &str) -> String {
        format!("{}chat-notified:{conversation}:{user}", self.shared)
    }

    /// Gateway processes and when each is considered dead.
    pub fn nodes(&self) -> String {
        format!("{}nodes", self.shared)
    }

    /// What a channel of ours carries.
    pub fn parse<'a>(&self, channel: &'a str) -> Option<Audience<'a>> {
        let rest = channel.strip_prefix(&self.prefix)?;
        if let Some(user) = rest.strip_prefix("user:") {
            Some(Audience::User(user))
        } else if let Some(topic) = rest.strip_prefix("topic:{") {
            Some(Audience::Topic(topic.strip_suffix('}')?))
        } else if let Some(role) = rest.strip_prefix("role:") {
            Some(Audience::Role(role))
        } else if rest == "all" {
            Some(Audience::All)
        } else if rest == "{notify}control" {
            Some(Audience::Control)
        } else if rest == "{notify}presence" {
            Some(Audience::Presence)
        } else {
            None
        }
    }

    /// The start of the shared slot's keys, for scripts that build key
    /// names themselves.
    pub fn script_prefix(&self) -> &str {
        &self.shared
    }

    /// The channel every gateway listens on for revocations.
    pub fn control(&self) -> String {
        format!("{}control", self.shared)
    }

    /// The channel presence scripts announce arrivals and departures on
    /// (in the shared slot, where the scripts run).
    pub fn presence_changes(&self) -> String {
        format!("{}presence", self.shared)
    }

    pub fn is_control(&self, channel: &str) -> bool {
        channel.strip_prefix(&self.shared) == Some("control")
    }

    /// Set while the tokens `user` held before a disconnect are refused.
    pub fn revoked_user(&self, user_id: &str) -> String {
        format!("{}revoked:user:{user_id}", self.shared)
    }

    /// Where versions before the Redis Cluster layout kept a user's
    /// revocation (still read on a single Redis until such keys expire).
    pub fn legacy_revoked_user(&self, user_id: &str) -> String {
        format!("{}revoked:user:{user_id}", self.prefix)
    }

    /// Where versions before the Redis Cluster layout kept a token's
    /// revocation.
    pub fn legacy_revoked_token(&self, jti: &str) -> String {
        format!("{}revoked:jti:{jti}", self.prefix)
    }

    /// Set while the token with this `jti` is refused.
    pub fn revoked_token(&self, jti: &str) -> String {
        format!("{}revoked:jti:{jti}", self.shared)
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
        assert!(names.is_control("t1:{notify}control"));
        assert!(!names.is_control("t2:{notify}control"));
        assert_eq!(names.topic("space:42"), "t1:topic:{space:42}");
        assert_eq!(names.snapshot("space:42"), "t1:snapshot:{space:42}");
        assert_eq!(names.nodes(), "t1:{notify}nodes");
        assert!(ChannelNames::valid_prefix("t1:"));
        assert!(!ChannelNames::valid_prefix("t{1}:"));
        assert_eq!(
            names.parse(&names.presence_changes()),
            Some(Audience::Presence)
        );
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
        assert_eq!(names.parse("t1:{notify}control"), Some(Audience::Control));
        assert_eq!(names.parse("t1:topic:space"), None);
        assert_eq!(names.parse("t2:all"), None);
    }
}
