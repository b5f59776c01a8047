//! A private Redis Cluster (three masters, three replicas) on free loopback
//! ports, from the installed `redis-server` and `redis-cli`, for tests that
//! kill a master and watch its replica take over.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long a master may be unreachable before its replica is promoted:
/// short, so a failover test takes seconds.
pub const NODE_TIMEOUT_MS: u64 = 1000;

pub struct RedisCluster {
    pub ports: Vec<u16>,
    children: Vec<Option<Child>>,
    dir: PathBuf,
}

impl RedisCluster {
    pub async fn start() -> RedisCluster {
        let dir = std::env::temp_dir().join(crate::unique("redis-cluster"));
        std::fs::create_dir_all(&dir).unwrap();
        // Held until every port is chosen, so no two are the same. Each node
        // also needs a cluster bus port: chosen here too, since the default
        // (its port + 10,000) may be taken or out of range.
        let listeners: Vec<TcpListener> = (0..12)
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let chosen: Vec<u16> = listeners
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect();
        drop(listeners);
        let (ports, bus_ports) = chosen.split_at(6);
        let ports = ports.to_vec();
        let children = ports
            .iter()
            .zip(bus_ports)
            .map(|(port, bus)| Some(spawn_node(&dir, *port, *bus)))
            .collect();
        let cluster = RedisCluster {
            ports,
            children,
            dir,
        };
        for port in &cluster.ports {
            crate::listening("a cluster node to listen", *port).await;
        }
        let addresses: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let created = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli must be installed");
        assert!(created.success(), "redis-cli --cluster create failed");
        cluster.wait_until_healthy().await;
        // Every replica in sync, so a master killed at once fails over.
        for port in cluster.ports.clone() {
            crate::eventually(
                "replication to be in sync",
                Duration::from_secs(30),
                || async move {
                    let info = cli(port, &["INFO", "replication"]);
                    info.contains("master_link_status:up")
                        || (info.contains("role:master") && info.contains("state=online"))
                },
            )
            .await;
        }
        cluster
    }

    /// `REDIS_CLUSTER_NODES`: every node as a seed.
    pub fn seeds(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The port of the master now serving `name`'s slot.
    pub fn master_of(&self, name: &str) -> u16 {
        let port = self.live_port();
        let slot: u16 = cli(port, &["CLUSTER", "KEYSLOT", name])
            .trim()
            .parse()
            .unwrap();
        for line in cli(port, &["CLUSTER", "NODES"]).lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let serves = fields[8..].iter().any(|range| {
                let mut bounds = range.split('-').filter_map(|b| b.parse::<u16>().ok());
                match (bounds.next(), bounds.next()) {
                    (Some(low), Some(high)) => (low..=high).contains(&slot),
                    (Some(only), None) => only == slot,
                    _ => false,
                }
            });
            if serves {
                let address = fields[1].split('@').next().unwrap();
                return address.rsplit(':').next().unwrap().parse().unwrap();
            }
        }
        panic!("no master serves slot {slot}");
    }

    /// Moves the (keyless) slot of `name` to another master, the way
    /// resharding does (IMPORTING, MIGRATING, then NODE on every master);
    /// returns the new owner's port.
    pub fn move_slot_of(&self, name: &str) -> u16 {
        let from = self.master_of(name);
        let slot = cli(from, &["CLUSTER", "KEYSLOT", name]).trim().to_owned();
        let masters: Vec<u16> = self
            .ports
            .iter()
            .zip(&self.children)
            .filter(|(port, child)| {
                child.is_some() && cli(**port, &["ROLE"]).lines().next() == Some("master")
            })
            .map(|(port, _)| *port)
            .collect();
        let to = *masters.iter().find(|port| **port != from).unwrap();
        let id = |port: u16| cli(port, &["CLUSTER", "MYID"]).trim().to_owned();
        let (from_id, to_id) = (id(from), id(to));
        cli(to, &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id]);
        cli(from, &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id]);
        for port in [to, from]
            .into_iter()
            .chain(masters.iter().copied().filter(|p| *p != from && *p != to))
        {
            cli(port, &["CLUSTER", "SETSLOT", &slot, "NODE", &to_id]);
        }
        to
    }

    /// SIGKILLs the node on `port`.
    pub fn kill(&mut self, port: u16) {
        let index = self.ports.iter().position(|p| *p == port).unwrap();
        if let Some(mut child) = self.children[index].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits until the surviving nodes agree the cluster is ok and, after a
    /// kill, take the killed nodes for failed (so their replicas were
    /// promoted: a failed master holding slots keeps the cluster down).
    pub async fn wait_until_healthy(&self) {
        let (live, dead): (Vec<_>, Vec<_>) = self
            .ports
            .iter()
            .zip(&self.children)
            .partition(|(_, child)| child.is_some());
        let live: Vec<u16> = live.into_iter().map(|(port, _)| *port).collect();
        let dead: Vec<String> = dead
            .into_iter()
            .map(|(port, _)| format!(":{port}@"))
            .collect();
        crate::eventually("the cluster to be healthy", Duration::from_secs(30), || {
            let (live, dead) = (live.clone(), dead.clone());
            async move {
                live.iter().all(|port| {
                    let nodes = cli(*port, &["CLUSTER", "NODES"]);
                    cli(*port, &["CLUSTER", "INFO"]).contains("cluster_state:ok")
                        && dead.iter().all(|address| {
                            nodes
                                .lines()
                                .filter(|line| line.contains(address.as_str()))
                                .all(|line| line.contains(",fail ") || line.contains(",fail,"))
                        })
                })
            }
        })
        .await;
    }

    /// Where the channels matching `pattern` are subscribed, per live node
    /// (for diagnosing a test that missed something).
    pub fn shard_subscriptions(&self, pattern: &str) -> Vec<(u16, String, String)> {
        self.ports
            .iter()
            .zip(&self.children)
            .filter(|(_, child)| child.is_some())
            .map(|(port, _)| {
                (
                    *port,
                    cli(*port, &["ROLE"])
                        .lines()
                        .next()
                        .unwrap_or("")
                        .to_owned(),
                    cli(*port, &["PUBSUB", "SHARDCHANNELS", pattern]),
                )
            })
            .collect()
    }

    fn live_port(&self) -> u16 {
        self.ports
            .iter()
            .zip(&self.children)
            .find(|(_, child)| child.is_some())
            .map(|(port, _)| *port)
            .unwrap()
    }
}

fn spawn_node(dir: &std::path::Path, port: u16, bus_port: u16) -> Child {
    Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--cluster-enabled", "yes"])
        .args(["--cluster-port", &bus_port.to_string()])
        .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
        .args(["--cluster-node-timeout", &NODE_TIMEOUT_MS.to_string()])
        // A replica may take over however long it was apart from its master.
        .args(["--cluster-replica-validity-factor", "0"])
        .args(["--dir", dir.to_str().unwrap()])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server must be installed")
}

fn cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli must be installed");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
