//! The pub/sub transport under the subscriber: one Redis, or a Redis
//! Cluster with sharded pub/sub. The subscriber sees one narrow interface
//! (connect, subscribe, unsubscribe, ping, next message) and keeps its
//! logic (what to subscribe, catching up after a loss) in one place.
//!
//! On a cluster, `SSUBSCRIBE` goes to the master owning each channel's
//! slot; the cluster connection holds one connection per node, so a node
//! subscribes once per shard it needs, not once per channel. The crate's
//! cluster connection resubscribes by itself after it reconnects a node or
//! rereads the slot map, but events published in between would be missed
//! without a catch-up from MySQL. So a lost node connection, or the server
//! dropping a subscription (its slot moved), ends the link like a lost
//! single Redis does: the subscriber connects again from the seed nodes
//! (reading the slot map anew, after a failover the promoted replica),
//! resubscribes everything and has every connection catch up.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use notify_bus::{BusError, RedisTarget};
use redis::aio::{PubSubSink, PubSubStream};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo};
use redis::{Msg, ProtocolVersion, PushInfo, PushKind, RedisResult};
use tokio::sync::mpsc;

/// Any Redis call slower than this counts as a lost connection.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Subscribe commands in flight at once on a cluster (one per slot).
const PARALLEL_SLOTS: usize = 64;

/// Where to subscribe.
pub enum Broker {
    Single(redis::Client),
    Cluster(Vec<String>),
}

/// One live subscriber connection (on a cluster: the set of node
/// connections of one cluster connection).
pub enum Link {
    Single {
        sink: PubSubSink,
        stream: PubSubStream,
    },
    Cluster {
        connection: ClusterConnection,
        pushes: mpsc::UnboundedReceiver<PushInfo>,
        /// Confirmations still due for our own SUNSUBSCRIBEs, by channel:
        /// they arrive as the same pushes as a subscription the server
        /// dropped, and must not be taken for one.
        unsubscribing: HashMap<String, u32>,
    },
}

/// What the link delivered.
pub enum Incoming {
    Message(Msg),
    /// The server ended a subscription nobody asked to end (on a cluster:
    /// its slot moved to another shard).
    Dropped(String),
}

impl Broker {
    pub fn new(target: &RedisTarget) -> Result<Self, BusError> {
        match target {
            RedisTarget::Single(url) => redis::Client::open(url.as_str())
                .map(Self::Single)
                .map_err(|e| BusError::Config(e.to_string())),
            RedisTarget::Cluster(nodes) => {
                // Checked now, so a bad address fails the start, not every
                // reconnection.
                RedisTarget::cluster_client(nodes, |builder| builder)?;
                Ok(Self::Cluster(nodes.clone()))
            }
        }
    }

    pub async fn connect(&self) -> Result<Link, String> {
        match self {
            Self::Single(client) => {
                let pubsub = timed(client.get_async_pubsub()).await?;
                let (sink, stream) = pubsub.split();
                Ok(Link::Single { sink, stream })
            }
            Self::Cluster(nodes) => {
                let (sender, pushes) = mpsc::unbounded_channel();
                // Subscriptions on a cluster connection need RESP3 pushes.
                let client = RedisTarget::cluster_client(nodes, |builder| {
                    builder
                        .use_protocol(ProtocolVersion::RESP3)
                        .push_sender(sender)
                })
                .map_err(|e| e.to_string())?;
                let connection = timed(client.get_async_connection()).await?;
                let mut link = Link::Cluster {
                    connection,
                    pushes,
                    unsubscribing: HashMap::new(),
                };
                // Every master in the slot map must answer before anything
                // is subscribed: a subscription whose master is down would
                // be sent to another node, and a replica accepts it, only
                // to drop it when it is promoted.
                link.ping().await?;
                Ok(link)
            }
        }
    }
}

impl Link {
    pub async fn subscribe(&mut self, channels: &[String]) -> Result<(), String> {
        match self {
            Self::Single { sink, .. } => timed(sink.subscribe(channels)).await,
            Self::Cluster { connection, .. } => for_each_slot(connection, channels, true).await,
        }
    }

    pub async fn unsubscribe(&mut self, channels: &[String]) -> Result<(), String> {
        match self {
            Self::Single { sink, .. } => timed(sink.unsubscribe(channels)).await,
            Self::Cluster { connection, .. } => for_each_slot(connection, channels, false).await,
        }
    }

    /// Checks the connection (on a cluster, every master's).
    pub async fn ping(&mut self) -> Result<(), String> {
        match self {
            // In subscriber mode the answer is ["pong", ""], not "PONG".
            Self::Single { sink, .. } => timed(sink.ping::<redis::Value>()).await.map(|_| ()),
            Self::Cluster { connection, .. } => {
                let routing = RoutingInfo::MultiNode((
                    MultipleNodeRoutingInfo::AllMasters,
                    Some(ResponsePolicy::AllSucceeded),
                ));
                timed(connection.route_command(redis::cmd("PING"), routing))
                    .await
                    .map(|_| ())
            }
        }
    }

    /// The next message; an error when the connection (or on a cluster,
    /// any node's) was lost.
    pub async fn next(&mut self) -> Result<Incoming, String> {
        match self {
            Self::Single { stream, .. } => match stream.next().await {
                Some(message) => Ok(Incoming::Message(message)),
                None => Err("connection closed".into()),
            },
            Self::Cluster {
                pushes,
                unsubscribing,
                ..
            } => loop {
                let Some(push) = pushes.recv().await else {
                    return Err("cluster connection closed".into());
                };
                match push.kind {
                    PushKind::SMessage | PushKind::Message => {
                        if let Some(message) = Msg::from_push_info(push) {
                            return Ok(Incoming::Message(message));
                        }
                    }
                    PushKind::Disconnection => {
                        return Err("lost the connection to a cluster node".into())
                    }
                    PushKind::SUnsubscribe => {
                        let Some(redis::Value::BulkString(name)) = push.data.first() else {
                            continue;
                        };
                        let name = String::from_utf8_lossy(name).into_owned();
                        match unsubscribing.get_mut(&name) {
                            Some(due) if *due > 1 => *due -= 1,
                            Some(_) => {
                                unsubscribing.remove(&name);
                            }
                            None => return Ok(Incoming::Dropped(name)),
                        }
                    }
                    // Confirmations of our own (re)subscriptions.
                    _ => {}
                }
            },
        }
    }
}

/// Sends SSUBSCRIBE (or SUNSUBSCRIBE) once per slot's channels (a sharded
/// subscription command must stay inside one slot), several slots at once.
async fn for_each_slot(
    connection: &ClusterConnection,
    channels: &[String],
    subscribe: bool,
) -> Result<(), String> {
    let mut by_slot: HashMap<u16, Vec<String>> = HashMap::new();
    for channel in channels {
        by_slot
            .entry(notify_bus::slot(channel.as_bytes()))
            .or_default()
            .push(channel.clone());
    }
    let mut calls = futures_util::stream::iter(by_slot.into_values())
        .map(|names| {
            let mut conn = connection.clone();
            async move {
                if subscribe {
                    timed(conn.ssubscribe(names)).await
                } else {
                    timed(conn.sunsubscribe(names)).await
                }
            }
        })
        .buffer_unordered(PARALLEL_SLOTS);
    while let Some(result) = calls.next().await {
        result?;
    }
    Ok(())
}

async fn timed<T>(future: impl std::future::Future<Output = RedisResult<T>>) -> Result<T, String> {
    tokio::time::timeout(CALL_TIMEOUT, future)
        .await
        .map_err(|_| "Redis call timed out".to_string())?
        .map_err(|e| e.to_string())
}
