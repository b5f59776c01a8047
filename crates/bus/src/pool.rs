//! The Redis connection used for commands and publishing, on a single
//! Redis or a Redis Cluster: one multiplexed connection per process (per
//! node on a cluster), shared by every task, which pipelines concurrent
//! requests on it. A pool of connections checked out one request at a time
//! cost two more round trips per request (its recycle check, PING and
//! UNWATCH) and most of Redis's CPU at everyday load. Subscribing never uses
//! it (see the gateway's broker for the subscriber side).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};
use tokio::sync::Mutex;

/// How long connecting to one Redis node and one reply may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// After connecting failed, callers are refused at once for this long.
const RETRY_CONNECT_AFTER: Duration = Duration::from_millis(500);

/// Where Redis is: one server, or the seed nodes of a Redis Cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedisTarget {
    Single(String),
    /// Addresses (`host:port` or `redis://` URLs) of some of the cluster's
    /// nodes; the rest are discovered from them.
    Cluster(Vec<String>),
}

impl RedisTarget {
    /// `cluster_nodes` (comma-separated, from `REDIS_CLUSTER_NODES`) wins
    /// over `url` when it names any node.
    pub fn new(url: &str, cluster_nodes: &str) -> Self {
        let nodes: Vec<String> = cluster_nodes
            .split(',')
            .map(str::trim)
            .filter(|node| !node.is_empty())
            .map(|node| {
                if node.contains("://") {
                    node.to_owned()
                } else {
                    format!("redis://{node}")
                }
            })
            .collect();
        if nodes.is_empty() {
            Self::Single(url.to_owned())
        } else {
            Self::Cluster(nodes)
        }
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// The command that publishes on a channel: sharded pub/sub on a
    /// cluster, so each event travels only inside the shard owning its
    /// channel instead of over the whole cluster bus.
    pub fn publish_command(&self) -> &'static str {
        match self {
            Self::Single(_) => "PUBLISH",
            Self::Cluster(_) => "SPUBLISH",
        }
    }

    /// A cluster client with the timeouts every caller wants; `configure`
    /// adds what one caller needs (the subscriber's push sender).
    pub fn cluster_client(
        nodes: &[String],
        configure: impl FnOnce(ClusterClientBuilder) -> ClusterClientBuilder,
    ) -> Result<ClusterClient, BusError> {
        configure(
            ClusterClientBuilder::new(nodes.to_vec())
                .connection_timeout(CALL_TIMEOUT)
                .response_timeout(CALL_TIMEOUT)
                // A request to a failed master is retried while its replica
                // takes over, then given up to the caller's own retries.
                .retries(3),
        )
        .build()
        .map_err(|e| BusError::Config(e.to_string()))
    }
}

/// The shared connection: made on first use and made again after a request
/// failed for lack of a connection (on a cluster, from the seed nodes,
/// which also rereads the slot map after a failover).
#[derive(Clone)]
pub struct RedisPool {
    shared: Arc<Shared>,
    target: RedisTarget,
}

enum Client {
    Single(redis::Client),
    Cluster(Box<ClusterClient>),
}

struct Shared {
    client: Client,
    held: Mutex<Held>,
    /// The generation of the connection a request found broken (failed for
    /// lack of a connection), 0 for none: a late failure on a connection
    /// already replaced does not throw the new one away.
    broken: AtomicU64,
}

#[derive(Default)]
struct Held {
    /// The connection and its generation (counted from 1).
    connection: Option<(u64, Connection)>,
    generation: u64,
    /// When connecting last failed: callers fail at once for a while
    /// instead of each waiting for its own attempt while Redis is away.
    failed_at: Option<std::time::Instant>,
}

/// A handle on the shared connection.
pub struct RedisConnection {
    connection: Connection,
    generation: u64,
    shared: Arc<Shared>,
}

#[derive(Clone)]
enum Connection {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("invalid Redis configuration: {0}")]
    Config(String),
    #[error("Redis unavailable: {0}")]
    Unavailable(String),
}

pub fn build_pool(target: &RedisTarget) -> Result<RedisPool, BusError> {
    let client = match target {
        RedisTarget::Single(url) => Client::Single(
            redis::Client::open(url.as_str()).map_err(|e| BusError::Config(e.to_string()))?,
        ),
        RedisTarget::Cluster(nodes) => {
            Client::Cluster(Box::new(RedisTarget::cluster_client(nodes, |builder| {
                builder
            })?))
        }
    };
    Ok(RedisPool {
        shared: Arc::new(Shared {
            client,
            held: Mutex::new(Held::default()),
            broken: AtomicU64::new(0),
        }),
        target: target.clone(),
    })
}

impl RedisPool {
    /// A handle on the shared connection; failing to get one means Redis is
    /// unavailable.
    pub async fn get(&self) -> Result<RedisConnection, BusError> {
        let shared = &self.shared;
        let mut held = shared.held.lock().await;
        let broken = shared.broken.load(Ordering::Relaxed);
        if matches!(held.connection, Some((generation, _)) if generation == broken) {
            held.connection = None;
        }
        if let Some((generation, connection)) = &held.connection {
            return Ok(RedisConnection {
                connection: connection.clone(),
                generation: *generation,
                shared: shared.clone(),
            });
        }
        if held
            .failed_at
            .is_some_and(|at| at.elapsed() < RETRY_CONNECT_AFTER)
        {
            return Err(BusError::Unavailable("Redis is away".into()));
        }
        let connected = tokio::time::timeout(CALL_TIMEOUT * 2, shared.connect())
            .await
            .map_err(|_| BusError::Unavailable("connecting timed out".into()))
            .and_then(|result| result.map_err(unavailable));
        let connection = match connected {
            Ok(connection) => connection,
            Err(error) => {
                held.failed_at = Some(std::time::Instant::now());
                return Err(error);
            }
        };
        held.failed_at = None;
        held.generation += 1;
        let generation = held.generation;
        held.connection = Some((generation, connection.clone()));
        Ok(RedisConnection {
            connection,
            generation,
            shared: shared.clone(),
        })
    }

    pub fn target(&self) -> &RedisTarget {
        &self.target
    }

    /// See [`RedisTarget::publish_command`].
    pub fn publish_command(&self) -> &'static str {
        self.target.publish_command()
    }

    /// Adds a publish of `payload` on `channel` to `pipe`.
    pub fn publish_in<'p>(
        &self,
        pipe: &'p mut Pipeline,
        channel: &str,
        payload: &str,
    ) -> &'p mut Pipeline {
        pipe.cmd(self.publish_command()).arg(channel).arg(payload)
    }

    /// A publish command on its own.
    pub fn publish_cmd(&self, channel: &str, payload: &str) -> Cmd {
        let mut cmd = redis::cmd(self.publish_command());
        cmd.arg(channel).arg(payload);
        cmd
    }
}

impl Clone for RedisConnection {
    /// Another handle on the same connection, for requests sent
    /// concurrently.
    fn clone(&self) -> Self {
        Self {
            connection: self.connection.clone(),
            generation: self.generation,
            shared: self.shared.clone(),
        }
    }
}

impl Shared {
    async fn connect(&self) -> redis::RedisResult<Connection> {
        match &self.client {
            Client::Single(client) => {
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(CALL_TIMEOUT))
                    .set_response_timeout(Some(CALL_TIMEOUT));
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map(Connection::Single)
            }
            Client::Cluster(client) => client.get_async_connection().await.map(Connection::Cluster),
        }
    }

    /// Marks connection `generation` broken when `result` failed for lack
    /// of a connection.
    fn note<T>(&self, generation: u64, result: &redis::RedisResult<T>) {
        if let Err(error) = result {
            if error.is_io_error()
                || error.is_connection_dropped()
                || error.is_connection_refusal()
                || error.is_timeout()
                || error.is_unrecoverable_error()
            {
                self.broken.store(generation, Ordering::Relaxed);
            }
        }
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let result = match &mut self.connection {
                Connection::Single(conn) => conn.req_packed_command(cmd).await,
                Connection::Cluster(conn) => conn.req_packed_command(cmd).await,
            };
            self.shared.note(self.generation, &result);
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let result = match &mut self.connection {
                Connection::Single(conn) => conn.req_packed_commands(cmd, offset, count).await,
                Connection::Cluster(conn) => conn.req_packed_commands(cmd, offset, count).await,
            };
            self.shared.note(self.generation, &result);
            result
        })
    }

    fn get_db(&self) -> i64 {
        match &self.connection {
            Connection::Single(conn) => conn.get_db(),
            Connection::Cluster(_) => 0,
        }
    }
}

/// True when Redis answers a PING (on a cluster: the node owning the
/// shared slot, where every key lives).
pub async fn ping(pool: &RedisPool) -> Result<(), BusError> {
    let mut conn = pool.get().await?;
    redis::cmd("EXISTS")
        .arg("{notify}ping")
        .query_async::<i64>(&mut conn)
        .await
        .map_err(unavailable)?;
    Ok(())
}

/// A connection; failing to get one means Redis is unavailable.
pub async fn conn(pool: &RedisPool) -> Result<RedisConnection, BusError> {
    pool.get().await
}

pub(crate) fn unavailable(e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(e.to_string())
}

/// The Redis Cluster slot of a key or channel name: CRC16 (XMODEM) of its
/// hash tag (the part between the first `{` and the next `}`, when not
/// empty) or of the whole name, modulo 16,384.
pub fn slot(name: &[u8]) -> u16 {
    let hashed = name
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &name[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(name);
    crc16_xmodem(hashed) % 16_384
}

fn crc16_xmodem(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis() {
        // Values from CLUSTER KEYSLOT on Redis 7.
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"123456789"), 12739);
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        assert_eq!(slot(b"foo{}{bar}"), slot(b"foo{}{bar}"));
        assert_ne!(slot(b"foo{}{bar}"), slot(b"bar"));
        assert_eq!(slot(b"t1:topic:{a}"), slot(b"t1:snapshot:{a}"));
    }

    #[test]
    fn cluster_nodes_win_over_the_url() {
        assert_eq!(
            RedisTarget::new("redis://x:1", ""),
            RedisTarget::Single("redis://x:1".into())
        );
        assert_eq!(
            RedisTarget::new("redis://x:1", " 127.0.0.1:7000, redis://h:7001 ,"),
            RedisTarget::Cluster(vec![
                "redis://127.0.0.1:7000".into(),
                "redis://h:7001".into()
            ])
        );
    }
}
