//! The node's one Redis subscriber connection.
//!
//! It holds exactly the channels this node's connections need (their
//! users, topics and roles, and the everyone channel while any is open),
//! reconciling whenever connections come and go, and hands every message to
//! the registry or the topics for delivery. When the connection is
//! lost it reconnects with backoff and resubscribes everything local users
//! need; connections stay open meanwhile. It also listens on the control
//! channel and closes the connections a revocation names.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytestring::ByteString;
use chrono::{NaiveDateTime, TimeDelta};
use notify_protocol::topic_event::event_roles;
use notify_protocol::{Audience, ChannelNames, Control};
use tokio::sync::watch;

use crate::broker::{Broker, Incoming, Link};
use crate::interest::Channel;
use crate::registry::Registry;
use crate::sessions::SessionId;
use crate::topics::Topics;

/// Channels per SUBSCRIBE/UNSUBSCRIBE command.
const CHUNK: usize = 1000;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// How long an event may trail its row's `created_at` (batching, publisher
/// retries) by default; catch-ups reach back this far.
pub const PUBLISH_LAG: TimeDelta = TimeDelta::seconds(15);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// What the rest of the node can see of the subscriber.
#[derive(Default)]
pub struct SubscriberStatus {
    pub connected: AtomicBool,
    pub received: AtomicU64,
    pub reconnects: AtomicU64,
    /// Times every connection was asked to catch up after the bus returned.
    pub resyncs: AtomicU64,
    /// Health pings answered on the subscriber connection.
    pub pings: AtomicU64,
    /// Of `received`: topic, role and everyone events.
    pub broadcasts: AtomicU64,
}

pub struct Subscriber {
    pub broker: Broker,
    pub registry: Arc<Registry>,
    pub topics: Arc<Topics>,
    pub channels: ChannelNames,
    pub status: Arc<SubscriberStatus>,
    /// How often the connection is checked with PING; a silent network
    /// failure is noticed within this plus the call timeout.
    pub ping_every: Duration,
    /// How long an event may trail its row's `created_at`.
    pub publish_lag: TimeDelta,
}

impl Subscriber {
    /// Runs until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = BACKOFF_MIN;
        // When the lost connection was last heard from: events published
        // since may have been missed.
        let mut lost_at: Option<NaiveDateTime> = None;
        let mut last_heard = Instant::now();
        loop {
            if *shutdown.borrow() {
                return;
            }
            match self
                .session(&mut shutdown, &mut backoff, &mut lost_at, &mut last_heard)
                .await
            {
                Ok(()) => return,
                Err(error) => {
                    // A silent drop is noticed only at the next ping's
                    // timeout; what was missed started when Redis fell
                    // silent, not when that was noticed.
                    lost_at.get_or_insert_with(|| since(last_heard));
                    if self.status.connected.swap(false, Ordering::Relaxed) {
                        tracing::warn!(%error, "Redis subscriber connection lost");
                    } else {
                        tracing::debug!(%error, "Redis subscriber still unavailable");
                    }
                }
            }
            self.registry.clear_subscribed();
            self.topics.clear_subscribed();
            self.status.reconnects.fetch_add(1, Ordering::Relaxed);
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stopped(&mut shutdown) => return,
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// One connection's life: subscribe what is wanted, then serve messages
    /// and reconcile until the connection fails (Err) or shutdown (Ok).
    async fn session(
        &self,
        shutdown: &mut watch::Receiver<bool>,
        backoff: &mut Duration,
        lost_at: &mut Option<NaiveDateTime>,
        last_heard: &mut Instant,
    ) -> Result<(), String> {
        let mut link = self.broker.connect().await?;
        let mut held: HashSet<Channel> = HashSet::new();
        // Everything marked before now is covered by this full pass.
        self.registry.interest().take();
        link.subscribe(&[self.channels.control(), self.channels.presence_changes()])
            .await?;
        let mut wanted = self.wanted();
        wanted.sort_by_key(|channel| matches!(channel, Channel::User(_)));
        self.subscribe(&mut link, &wanted, &mut held).await?;
        *last_heard = Instant::now();
        self.status.connected.store(true, Ordering::Relaxed);
        *backoff = BACKOFF_MIN;
        tracing::info!(channels = held.len(), "Redis subscriber connected");
        if let Some(lost) = lost_at.take() {
            // Subscribed again: whatever was published from a little before
            // the loss until now is fetched from MySQL by every connection.
            self.registry.resync_all(lost - self.publish_lag);
            self.status.resyncs.fetch_add(1, Ordering::Relaxed);
        }

        let mut ping = tokio::time::interval(self.ping_every);
        ping.reset();
        loop {
            tokio::select! {
                incoming = link.next() => match incoming? {
                    Incoming::Message(message) => {
                        *last_heard = Instant::now();
                        self.dispatch(&message);
                    }
                    Incoming::Dropped(name) => {
                        let ours = name == self.channels.control()
                            || name == self.channels.presence_changes()
                            || held.iter().any(|channel| channel.name(&self.channels) == name);
                        if ours {
                            return Err(format!("Redis dropped the subscription to {name}"));
                        }
                    }
                },
                _ = self.registry.interest().changed() => self.reconcile(&mut link, &mut held).await?,
                _ = ping.tick() => {
                    link.ping().await?;
                    *last_heard = Instant::now();
                    self.status.pings.fetch_add(1, Ordering::Relaxed);
                }
                _ = stopped(shutdown) => {
                    let channels: Vec<String> = held.iter().map(|c| c.name(&self.channels)).collect();
                    for chunk in channels.chunks(CHUNK) {
                        let _ = link.unsubscribe(chunk).await;
                    }
                    return Ok(());
                }
            }
        }
    }

    /// Every channel local connections need now.
    fn wanted(&self) -> Vec<Channel> {
        let mut wanted: Vec<Channel> = self
            .registry
            .users_wanted()
            .into_iter()
            .map(Channel::User)
            .collect();
        wanted.extend(self.topics.wanted().into_iter().map(Channel::Topic));
        wanted.extend(self.registry.roles_wanted().into_iter().map(Channel::Role));
        if self.registry.wants_all() {
            wanted.push(Channel::All);
        }
        wanted
    }

    fn wants(&self, channel: &Channel) -> bool {
        match channel {
            Channel::User(user) => self.registry.wants(user),
            Channel::Topic(topic) => self.topics.wants(topic),
            Channel::Role(role) => self.registry.wants_role(role),
            Channel::All => self.registry.wants_all(),
        }
    }

    /// Tells whoever waits on these channels that they are (or are no
    /// longer) subscribed.
    fn confirm(&self, channels: &[Channel], subscribed: bool) {
        let users = channels.iter().filter_map(|c| match c {
            Channel::User(user) => Some(user),
            _ => None,
        });
        self.registry.set_subscribed(users, subscribed);
        let topics = channels.iter().filter_map(|c| match c {
            Channel::Topic(topic) => Some(topic),
            _ => None,
        });
        self.topics.set_subscribed(topics, subscribed);
    }

    fn dispatch(&self, message: &redis::Msg) {
        self.status.received.fetch_add(1, Ordering::Relaxed);
        let channel = message.get_channel_name();
        let Some(audience) = self.channels.parse(channel) else {
            return;
        };
        if audience == Audience::Control {
            return self.control(message.get_payload_bytes());
        }
        if audience == Audience::Presence {
            return self.presence(message.get_payload_bytes());
        }
        // Validated once here; every connection then shares the same bytes.
        let Ok(frame) = ByteString::try_from(message.get_payload_bytes().to_vec()) else {
            tracing::warn!(channel, "dropped a non-UTF-8 event");
            return;
        };
        match audience {
            Audience::User(user) => {
                self.registry.deliver(user, &frame);
            }
            Audience::Topic(topic) => {
                self.status.broadcasts.fetch_add(1, Ordering::Relaxed);
                self.topics.deliver(topic, &frame);
            }
            Audience::Role(role) => {
                self.status.broadcasts.fetch_add(1, Ordering::Relaxed);
                self.registry
                    .deliver_role(role, &event_roles(&frame), &frame);
            }
            Audience::All => {
                self.status.broadcasts.fetch_add(1, Ordering::Relaxed);
                self.registry.deliver_all(&frame);
            }
            Audience::Control | Audience::Presence => {}
        }
    }

    /// A presence change: for the topic's subscribers here, if any.
    fn presence(&self, payload: &[u8]) {
        #[derive(serde::Deserialize)]
        struct Change<'a> {
            #[serde(borrow)]
            topic: std::borrow::Cow<'a, str>,
        }
        let Ok(change) = serde_json::from_slice::<Change>(payload) else {
            tracing::warn!("ignored a malformed presence change");
            return;
        };
        let Ok(frame) = ByteString::try_from(payload.to_vec()) else {
            return;
        };
        self.status.broadcasts.fetch_add(1, Ordering::Relaxed);
        self.topics.deliver(&change.topic, &frame);
    }

    fn control(&self, payload: &[u8]) {
        let closed = match Control::parse(payload) {
            Some(Control::DisconnectUser { user }) => self.registry.disconnect_user(&user),
            Some(Control::RevokeToken { jti }) => self.registry.revoke_token(&jti),
            Some(Control::CloseSession { user, session }) => match SessionId::parse(&session) {
                Some(session) => self.registry.close_sessions(&user, Some(session), false),
                None => 0,
            },
            // A `keep` that is no session id keeps nothing.
            Some(Control::CloseOtherSessions { user, keep }) => {
                self.registry
                    .close_sessions(&user, SessionId::parse(&keep), true)
            }
            None => {
                tracing::warn!("ignored an unknown control message");
                return;
            }
        };
        if closed > 0 {
            tracing::info!(
                closed,
                "closed connections whose token or session was revoked"
            );
        }
    }

    async fn reconcile(&self, link: &mut Link, held: &mut HashSet<Channel>) -> Result<(), String> {
        let mut add = Vec::new();
        let mut remove = Vec::new();
        let mut already = Vec::new();
        for channel in self.registry.interest().take() {
            match (self.wants(&channel), held.contains(&channel)) {
                (true, false) => add.push(channel),
                (false, true) => remove.push(channel),
                // Subscribed already: make sure new members know it.
                (true, true) => already.push(channel),
                (false, false) => {}
            }
        }
        self.confirm(&already, true);
        // Role and everyone channels first: a connection is greeted once its
        // user channel is confirmed, and by then those are too.
        add.sort_by_key(|channel| matches!(channel, Channel::User(_)));
        self.subscribe(link, &add, held).await?;
        for chunk in remove.chunks(CHUNK) {
            let names: Vec<String> = chunk.iter().map(|c| c.name(&self.channels)).collect();
            // Forgotten first, so the server's confirmation is not taken for
            // a subscription it dropped.
            for channel in chunk {
                held.remove(channel);
            }
            link.unsubscribe(&names).await?;
        }
        Ok(())
    }

    async fn subscribe(
        &self,
        link: &mut Link,
        channels: &[Channel],
        held: &mut HashSet<Channel>,
    ) -> Result<(), String> {
        for chunk in channels.chunks(CHUNK) {
            let names: Vec<String> = chunk.iter().map(|c| c.name(&self.channels)).collect();
            link.subscribe(&names).await?;
            held.extend(chunk.iter().cloned());
            self.confirm(chunk, true);
        }
        Ok(())
    }
}

/// The wall-clock time `instant` was.
fn since(instant: Instant) -> NaiveDateTime {
    let ago = TimeDelta::from_std(instant.elapsed()).unwrap_or(TimeDelta::MAX);
    notify_store::now()
        .checked_sub_signed(ago)
        .unwrap_or(NaiveDateTime::MIN)
}

/// Resolves once shutdown is requested (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
