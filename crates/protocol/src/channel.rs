//! Naming of the per-user Redis channels.
//!
//! Every user has one channel, `{prefix}user:{id}`. The prefix lets several
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
    }
}
