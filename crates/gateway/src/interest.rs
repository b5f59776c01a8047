//! Which Redis channels this node's connections need, as far as the
//! subscriber is concerned: every change marks a channel "dirty", and the
//! subscriber later compares what it holds with what is wanted and sends one
//! SUBSCRIBE and one UNSUBSCRIBE for everything that changed meanwhile, so a
//! burst of 10,000 connects costs a handful of round trips, and a join
//! racing a leave always settles on the right state.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use notify_protocol::ChannelNames;
use tokio::sync::Notify;

/// One channel the node may need.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Channel {
    User(Arc<str>),
    Topic(Arc<str>),
    Role(Arc<str>),
    /// Events for every connection.
    All,
}

impl Channel {
    pub fn name(&self, channels: &ChannelNames) -> String {
        match self {
            Channel::User(user) => channels.user(user),
            Channel::Topic(topic) => channels.topic(topic),
            Channel::Role(role) => channels.role(role),
            Channel::All => channels.all(),
        }
    }
}

#[derive(Default)]
pub struct Interest {
    dirty: Mutex<HashSet<Channel>>,
    notify: Notify,
}

impl Interest {
    /// `channel` may have to be subscribed or unsubscribed.
    pub fn mark(&self, channel: Channel) {
        self.dirty
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(channel);
        self.notify.notify_one();
    }

    /// Channels that may need a change since the last call.
    pub fn take(&self) -> Vec<Channel> {
        let mut dirty = self.dirty.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *dirty).into_iter().collect()
    }

    /// Resolves once some channel has been marked.
    pub async fn changed(&self) {
        self.notify.notified().await
    }
}
