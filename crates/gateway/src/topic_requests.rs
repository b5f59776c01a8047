//! What a connection does with `subscribe`, `unsubscribe` and `publish`,
//! and the topics it holds, given back when it ends however it ends.

use std::sync::Arc;
use std::time::Duration;

use notify_protocol::names::valid_topic;
use notify_protocol::topic_event::{event_id, EventAudience, TopicEvent};
use notify_protocol::{FrameError, ServerFrame, TopicRequest};
use serde_json::value::RawValue;

use crate::connection::Who;
use crate::node::Node;
use crate::presence::Presence;
use crate::requests::Reply;
use crate::send_queue::SendQueue;
use crate::topics::Topics;

/// Longest wait for Redis to confirm a new topic subscription; `subscribed`
/// promises that every later event arrives, so without confirmation the
/// request is refused (and undone) rather than answered.
const CONFIRM_WAIT: Duration = Duration::from_secs(3);

/// The topics one connection holds.
pub(crate) struct Memberships {
    topics: Arc<Topics>,
    presence: Option<Arc<Presence>>,
    conn: u64,
    user: Arc<str>,
    /// (topic, whether it tracks presence)
    held: Vec<(Arc<str>, bool)>,
}

impl Memberships {
    fn new(node: &Node, who: &Who<'_>) -> Self {
        Self {
            topics: node.topics.clone(),
            presence: node.presence.clone(),
            conn: who.registration.id(),
            user: Arc::from(who.user),
            held: Vec::new(),
        }
    }

    fn position(&self, topic: &str) -> Option<usize> {
        self.held.iter().position(|(t, _)| &**t == topic)
    }

    fn release(&self, topic: &Arc<str>, presence: bool) {
        self.topics.leave(topic, self.conn);
        if let (true, Some(tracker)) = (presence, &self.presence) {
            tracker.leave(topic, &self.user);
        }
    }
}

impl Drop for Memberships {
    fn drop(&mut self) {
        for (topic, presence) in std::mem::take(&mut self.held) {
            self.release(&topic, presence);
        }
    }
}

/// Created on the first topic request: most connections never make one.
pub(crate) type Held = Option<Box<Memberships>>;

pub(crate) async fn handle(
    node: &Node,
    who: &Who<'_>,
    queue: &Arc<SendQueue>,
    held: &mut Held,
    request: Box<TopicRequest>,
) -> Reply {
    let (topic, result) = match *request {
        TopicRequest::Subscribe { topic } => {
            let result = subscribe(node, who, queue, held, &topic).await;
            (topic, result)
        }
        TopicRequest::Unsubscribe { topic } => {
            let result = unsubscribe(held, &topic);
            (topic, result)
        }
        TopicRequest::Publish { topic, event, data } => {
            let result = publish(node, who, &topic, &event, &data.0);
            (topic, result)
        }
    };
    match result {
        Ok(reply) => reply,
        Err(error) => Reply::TopicRefused(Box::new((topic, error))),
    }
}

async fn subscribe(
    node: &Node,
    who: &Who<'_>,
    queue: &Arc<SendQueue>,
    held: &mut Held,
    topic: &str,
) -> Result<Reply, FrameError> {
    if !valid_topic(topic) {
        return Err(FrameError::InvalidTopic);
    }
    let rule = node.policy.rule(topic, who.user);
    if !rule.subscribe.allows(&who.token.roles) {
        return Err(FrameError::Forbidden(
            "the topic policy does not let you subscribe to this topic",
        ));
    }
    let memberships = held.get_or_insert_with(|| Box::new(Memberships::new(node, who)));
    let already = memberships.position(topic).is_some();
    if !already && memberships.held.len() >= node.limits.max_topics_per_connection {
        return Err(FrameError::TooManyTopics(
            node.limits.max_topics_per_connection,
        ));
    }
    // Held from the join on (without presence until it is answered), so
    // the membership is given back however this connection ends.
    let joined = if already {
        None
    } else {
        let key = node.topics.join(topic, memberships.conn, queue);
        if let Some(key) = &key {
            memberships.held.push((key.clone(), false));
        }
        key
    };
    let confirmed = node.topics.confirmed(topic, CONFIRM_WAIT).await;
    let snapshot = match confirmed {
        true => read_snapshot(node, topic).await,
        false => Err("Redis did not confirm the subscription in time".to_string()),
    };
    let snapshot = match snapshot {
        Ok(snapshot) => snapshot,
        Err(error) => {
            tracing::warn!(%error, "could not subscribe a connection to a topic");
            if let Some(key) = joined {
                memberships
                    .held
                    .retain(|(held, _)| !Arc::ptr_eq(held, &key));
                memberships.release(&key, false);
            }
            return Err(FrameError::Unavailable(
                "could not subscribe right now, retry later",
            ));
        }
    };
    if let Some(key) = joined {
        if let (true, Some(presence)) = (rule.presence, &node.presence) {
            presence.join(&key, &memberships.user);
            if let Some(held) = memberships
                .held
                .iter_mut()
                .find(|(held, _)| Arc::ptr_eq(held, &key))
            {
                held.1 = true;
            }
        }
    }
    Ok(Reply::Text(
        ServerFrame::Subscribed {
            topic,
            snapshot: snapshot.as_deref(),
        }
        .to_frame(),
    ))
}

fn unsubscribe(held: &mut Held, topic: &str) -> Result<Reply, FrameError> {
    if !valid_topic(topic) {
        return Err(FrameError::InvalidTopic);
    }
    if let Some(memberships) = held {
        if let Some(at) = memberships.position(topic) {
            let (key, presence) = memberships.held.swap_remove(at);
            memberships.release(&key, presence);
        }
    }
    Ok(Reply::Text(ServerFrame::Unsubscribed { topic }.to_frame()))
}

fn publish(
    node: &Node,
    who: &Who<'_>,
    topic: &str,
    event: &str,
    data: &RawValue,
) -> Result<Reply, FrameError> {
    if !valid_topic(topic) {
        return Err(FrameError::InvalidTopic);
    }
    if !node
        .policy
        .rule(topic, who.user)
        .publish
        .allows(&who.token.roles)
    {
        return Err(FrameError::Forbidden(
            "the topic policy does not let you publish to this topic",
        ));
    }
    let id = event_id(rand::random());
    let frame = TopicEvent {
        audience: EventAudience::Topic(topic),
        event,
        data,
        id: &id,
        sent_at: chrono::Utc::now(),
        from: Some(who.user),
    }
    .to_frame();
    node.publisher.publish(node.channels.topic(topic), frame);
    Ok(Reply::Nothing)
}

/// After a `refresh` changed the connection's roles: leaves the topics the
/// policy no longer lets it subscribe to, and returns them.
pub(crate) fn recheck(node: &Node, who: &Who<'_>, held: &mut Held) -> Vec<Arc<str>> {
    let Some(memberships) = held else {
        return Vec::new();
    };
    let mut left = Vec::new();
    memberships.held.retain(|(topic, presence)| {
        let allowed = node
            .policy
            .rule(topic, who.user)
            .subscribe
            .allows(&who.token.roles);
        if !allowed {
            left.push((topic.clone(), *presence));
        }
        allowed
    });
    for (topic, presence) in &left {
        memberships.release(topic, *presence);
    }
    left.into_iter().map(|(topic, _)| topic).collect()
}

/// The topic's retained event, if any; JSON text that is not valid (written
/// by something else) counts as none.
async fn read_snapshot(node: &Node, topic: &str) -> Result<Option<Box<RawValue>>, String> {
    let read = async {
        let mut conn = node.redis.get().await.map_err(|e| e.to_string())?;
        redis::cmd("GET")
            .arg(node.channels.snapshot(topic))
            .query_async::<Option<String>>(&mut conn)
            .await
            .map_err(|e| e.to_string())
    };
    let text = tokio::time::timeout(CONFIRM_WAIT, read)
        .await
        .map_err(|_| "Redis did not answer in time".to_string())??;
    Ok(text.and_then(|text| RawValue::from_string(text).ok()))
}
