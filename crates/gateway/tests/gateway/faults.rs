//! Fault tests with real processes: gateways killed or drained, Redis
//! restarted and MySQL cut off while notifications are being sent. Clients
//! behave as the protocol asks: on any close they reconnect (to another
//! node when theirs is gone) with `after` = the highest id they have, and
//! drop duplicates by id. Every notification sent must arrive.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use notify_testkit::outage::{mysql_addr, mysql_url_via, Outage};
use notify_testkit::redis_server::RedisServer;
use notify_testkit::ws::{Received, WsClient};
use notify_testkit::{eventually, token, JWT_SECRET};

use crate::helpers::*;

/// A gateway as its own OS process.
pub(crate) struct GatewayProcess {
    child: Option<Child>,
    port: u16,
    pub(crate) base: String,
}

impl GatewayProcess {
    async fn start(cluster: &Cluster) -> GatewayProcess {
        Self::start_with(cluster, &[]).await
    }

    /// A gateway process with these extra environment variables.
    pub(crate) async fn start_with(cluster: &Cluster, env: &[(&str, &str)]) -> GatewayProcess {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_notify-gateway"))
            .env("GATEWAY_ADDR", format!("127.0.0.1:{port}"))
            .env("DATABASE_URL", &cluster.db.url)
            .env("REDIS_URL", &cluster.redis_url)
            .env("JWT_SECRET", JWT_SECRET)
            .env("CHANNEL_PREFIX", &cluster.prefix)
            .env("DRAIN_BATCH", "2")
            .env("DRAIN_INTERVAL_MS", "20")
            .env("GATEWAY_WORKERS", "1")
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let gateway = GatewayProcess {
            child: Some(child),
            port,
            base: format!("ws://127.0.0.1:{port}"),
        };
        eventually("gateway process ready", Duration::from_secs(20), || async {
            get(&format!("http://127.0.0.1:{port}/ready")).await.0 == 200
        })
        .await;
        gateway
    }

    pub(crate) fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let ok = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status()
                .unwrap()
                .success();
            assert!(ok);
        }
    }

    async fn exit_status(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        tokio::task::spawn_blocking(move || child.wait())
            .await
            .unwrap()
            .unwrap()
    }

    fn rss_kb(&self) -> u64 {
        let pid = self.child.as_ref().map(Child::id).unwrap_or(0);
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What one reconnecting client saw.
#[derive(Default, Debug)]
struct Seen {
    ids: HashSet<u64>,
    frames: usize,
    duplicates: usize,
    connections: usize,
    closes: Vec<Option<u16>>,
}

type Sent = RefCell<HashMap<String, Vec<u64>>>;

/// A client of `user` that reconnects on any close, trying `bases` in turn,
/// with `after` = the highest id it has, until the sender is done and it
/// has every id sent to it (or `limit` passes). Its first connection asks
/// for everything stored (`after=0`): it starts while the sender already
/// runs, and a fresh client without `after` only gets live events.
async fn follow(
    bases: &[String],
    user: &str,
    sent: &Sent,
    done: &Cell<bool>,
    limit: Duration,
) -> Seen {
    let mut seen = Seen::default();
    let started = Instant::now();
    let finished = |seen: &Seen| {
        done.get()
            && sent
                .borrow()
                .get(user)
                .is_none_or(|ids| ids.iter().all(|id| seen.ids.contains(id)))
    };
    let mut attempt = 0;
    while !finished(&seen) && started.elapsed() < limit {
        let base = &bases[attempt % bases.len()];
        attempt += 1;
        let after = seen.ids.iter().max().copied().unwrap_or(0);
        let url = format!("{base}/ws?token={}&after={after}", token(user));
        let Ok(mut client) = WsClient::connect(&url, &[]).await else {
            // Refused (node gone or draining): back off a little, try the next.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        seen.connections += 1;
        loop {
            match client.next_within(Duration::from_millis(200)).await {
                None => {
                    if finished(&seen) || started.elapsed() > limit {
                        break;
                    }
                }
                Some(Received::Text(frame)) => {
                    if frame["type"] == "notification" {
                        seen.frames += 1;
                        if !seen
                            .ids
                            .insert(frame["notification"]["id"].as_u64().unwrap())
                        {
                            seen.duplicates += 1;
                        }
                    }
                }
                Some(Received::Close(code, _)) => {
                    seen.closes.push(code);
                    break;
                }
                Some(Received::Ended) => {
                    seen.closes.push(None);
                    break;
                }
                Some(_) => {}
            }
        }
    }
    seen
}

/// Sends `rounds` notifications to each of `users`, one request per round,
/// `every` apart, calling `fault(round)` before each round.
async fn send_stream(
    cluster: &Cluster,
    users: &[&str],
    rounds: usize,
    every: Duration,
    sent: &Sent,
    done: &Cell<bool>,
    mut fault: impl AsyncFnMut(usize),
) {
    for round in 0..rounds {
        fault(round).await;
        let ids = cluster.notify(users, &format!("round {round}")).await;
        for (user, id) in users.iter().zip(ids) {
            sent.borrow_mut()
                .entry(user.to_string())
                .or_default()
                .push(id);
        }
        tokio::time::sleep(every).await;
    }
    done.set(true);
}

/// Checks every client got every id sent to it, and prints the tally.
fn check(name: &str, users: &[&str], sent: &Sent, seen: &[Seen]) {
    let sent = sent.borrow();
    let total: usize = sent.values().map(Vec::len).sum();
    let received: usize = seen.iter().map(|s| s.ids.len()).sum();
    let frames: usize = seen.iter().map(|s| s.frames).sum();
    let reconnects: usize = seen.iter().map(|s| s.connections.saturating_sub(1)).sum();
    println!(
        "{name}: sent {total}, received {received} distinct ({frames} frames, {} duplicates dropped), {reconnects} reconnects",
        frames - received
    );
    for (user, seen) in users.iter().zip(seen) {
        let expected: HashSet<u64> = sent
            .get(*user)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let missing: Vec<_> = expected.difference(&seen.ids).collect();
        assert!(missing.is_empty(), "{user} never got {missing:?}");
        assert!(
            seen.ids.is_subset(&expected),
            "{user} got someone else's notification"
        );
    }
    assert_eq!(received, total);
}

const USERS: [&str; 4] = ["fa", "fb", "fc", "fd"];

/// Streams `rounds` notifications to the four users while `fault` strikes,
/// each user following its own list of nodes, and checks that every user
/// got everything sent to it.
async fn stream_through(
    name: &str,
    cluster: &Cluster,
    routes: [&[String]; 4],
    rounds: usize,
    fault: impl AsyncFnMut(usize),
) -> [Seen; 4] {
    let (sent, done) = (Sent::default(), Cell::new(false));
    let limit = Duration::from_secs(40);
    let (_, a, b, c, d) = tokio::join!(
        send_stream(
            cluster,
            &USERS,
            rounds,
            Duration::from_millis(15),
            &sent,
            &done,
            fault
        ),
        follow(routes[0], USERS[0], &sent, &done, limit),
        follow(routes[1], USERS[1], &sent, &done, limit),
        follow(routes[2], USERS[2], &sent, &done, limit),
        follow(routes[3], USERS[3], &sent, &done, limit),
    );
    let seen = [a, b, c, d];
    check(name, &USERS, &sent, &seen);
    seen
}

/// 1. kill -9 one of two gateways mid-stream: its clients reconnect to the
///    survivor with `after` and nothing is lost.
#[actix_web::test]
async fn killing_a_gateway_loses_nothing() {
    let cluster = Cluster::start().await;
    let g1 = GatewayProcess::start(&cluster).await;
    let g2 = GatewayProcess::start(&cluster).await;
    let on_g1 = [g1.base.clone(), g2.base.clone()];
    let on_g2 = [g2.base.clone(), g1.base.clone()];
    let seen = stream_through(
        "kill -9 a gateway",
        &cluster,
        [&on_g1, &on_g1, &on_g2, &on_g2],
        100,
        async |round| {
            if round == 30 {
                g1.signal("-KILL");
            }
        },
    )
    .await;
    assert!(
        seen[0].connections >= 2 && seen[1].connections >= 2,
        "g1's clients did not reconnect"
    );
}

/// 2. Redis restarted mid-stream: connected clients lose nothing and the
///    api keeps accepting (every send above returned 202).
#[actix_web::test]
async fn restarting_redis_loses_nothing() {
    let mut redis = RedisServer::start().await;
    let cluster = Cluster::start_on(redis.url()).await;
    let g = GatewayProcess::start(&cluster).await;
    let only = [g.base.clone()];
    let seen = stream_through(
        "restart Redis",
        &cluster,
        [&only, &only, &only, &only],
        80,
        async |round| {
            if round == 20 {
                redis.stop();
            }
            if round == 40 {
                redis.restart().await;
            }
        },
    )
    .await;
    // Connections stayed up through the outage.
    assert!(seen.iter().all(|s| s.connections == 1), "{seen:?}");
}

/// 3. MySQL cut off: the api answers 503 with Retry-After and stores
///    nothing; live connections stay up; once MySQL is back, sending works
///    without restarting anything.
#[actix_web::test]
async fn losing_mysql_refuses_cleanly_and_recovers() {
    let outage = Outage::start(mysql_addr()).await;
    let port = outage.port;
    let cluster =
        Cluster::start_custom(notify_testkit::redis_url(), |url| mysql_url_via(url, port)).await;
    let g = cluster
        .gateway_with(|c| c.database_url = mysql_url_via(&c.database_url, port))
        .await;
    let (mut client, _) = g.connect("mia").await;
    let first = cluster.notify(&["mia"], "before").await;
    assert_eq!(client.notification_id().await, first[0]);

    outage.set_up(false);
    let mut refused = 0;
    for _ in 0..5 {
        let mut response = awc::Client::new()
            .post(format!("{}/v1/notifications", cluster.api))
            .insert_header(("x-api-key", API_KEY))
            .send_json(&serde_json::json!({"recipients": ["mia", "max"], "title": "t", "message": "during"}))
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 503);
        assert!(response.headers().contains_key("retry-after"));
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "service_unavailable");
        refused += 1;
    }
    // The live connection is still up and answering.
    client.send(r#"{"type":"ping"}"#).await;
    assert_eq!(client.text().await["type"], "pong");
    assert_eq!(g.connections().await, 1);

    outage.set_up(true);
    let after = cluster.notify(&["mia"], "after").await;
    assert_eq!(client.notification_id().await, after[0]);
    let stored = cluster
        .db
        .count("SELECT COUNT(*) AS n FROM notifications")
        .await;
    println!("MySQL outage: sent 2 accepted, {refused} refused with 503, {stored} rows stored, 2 received");
    assert_eq!(stored, 2, "a refused request left rows behind");
}

/// 4. SIGTERM drain under load: clients get 1012, reconnect to the other
///    node with `after`, and nothing is lost.
#[actix_web::test]
async fn draining_a_gateway_loses_nothing() {
    let cluster = Cluster::start().await;
    let mut g1 = GatewayProcess::start(&cluster).await;
    let g2 = GatewayProcess::start(&cluster).await;
    let on_g1 = [g1.base.clone(), g2.base.clone()];
    let seen = stream_through(
        "SIGTERM drain",
        &cluster,
        [&on_g1, &on_g1, &on_g1, &on_g1],
        100,
        async |round| {
            if round == 30 {
                g1.signal("-TERM");
            }
        },
    )
    .await;
    for s in &seen {
        assert_eq!(s.closes.first(), Some(&Some(1012)), "{s:?}");
    }
    assert!(g1.exit_status().await.success());
}

/// 5. A client that never acks and reconnects 100 times creates no rows
///    and leaves nothing behind on the node.
#[actix_web::test]
async fn a_hundred_reconnects_leave_nothing_behind() {
    let cluster = Cluster::start().await;
    let g = GatewayProcess::start(&cluster).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.extend(cluster.notify(&["rex"], &format!("n{i}")).await);
    }
    let rss_before = g.rss_kb();
    let mut frames = 0;
    for _ in 0..100 {
        let url = format!("{}/ws?token={}&after=0", g.base, token("rex"));
        let mut client = WsClient::connect(&url, &[]).await.unwrap();
        let mut got = Vec::new();
        loop {
            let frame = client.text().await;
            match frame["type"].as_str() {
                Some("notification") => got.push(frame["notification"]["id"].as_u64().unwrap()),
                Some("resumed") => break,
                _ => {}
            }
        }
        assert_eq!(got, ids);
        frames += got.len();
        drop(client);
    }
    let ready = format!("http://127.0.0.1:{}/ready", g.port);
    eventually("connections released", Duration::from_secs(10), || async {
        let body = get(&ready).await.1;
        body["connections"] == 0 && body["users"] == 0
    })
    .await;
    eventually("channel unsubscribed", Duration::from_secs(10), || async {
        cluster.subscribed_channels().await.is_empty()
    })
    .await;
    let rss_after = g.rss_kb();
    let rows = cluster
        .db
        .count("SELECT COUNT(*) AS n FROM notifications WHERE delivered_at IS NULL")
        .await;
    println!(
        "100 reconnects: sent 5, received {frames} frames (5 per connection), {rows} rows, RSS {rss_before} kB -> {rss_after} kB"
    );
    assert_eq!(rows, 5, "reconnects must not create or change rows");
    assert!(
        rss_after < rss_before + 8 * 1024,
        "node grew from {rss_before} kB to {rss_after} kB"
    );
}

/// Acks a node has taken but not yet written when it is told to stop are
/// written before it exits.
#[actix_web::test]
async fn acks_queued_at_sigterm_are_written_before_exit() {
    let cluster = Cluster::start().await;
    let mut g = GatewayProcess::start(&cluster).await;
    let (mut client, _) = WsClient::connect_as(&g.base, &token("acker")).await;
    let id = cluster.notify(&["acker"], "ack me").await[0];
    assert_eq!(client.notification_id().await, id);
    client
        .send(&format!(r#"{{"type":"ack","ids":[{id}]}}"#))
        .await;
    // Frames are handled in order: once the pong is back, the ack is queued.
    client.send(r#"{"type":"ping"}"#).await;
    assert_eq!(client.text().await["type"], "pong");

    g.signal("-TERM");
    assert_eq!(client.closed().await.0, Some(1012));
    assert!(g.exit_status().await.success());
    let delivered = format!(
        "SELECT COUNT(*) AS n FROM notifications WHERE id = {id} AND delivered_at IS NOT NULL"
    );
    assert_eq!(cluster.db.count(&delivered).await, 1);
}
