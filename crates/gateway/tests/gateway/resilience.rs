use std::process::{Command, Stdio};
use std::time::Duration;

use notify_testkit::redis_server::RedisServer;
use notify_testkit::ws::{raw_upgrade, Received, WsClient};
use notify_testkit::{eventually, token, JWT_SECRET};

use crate::helpers::*;

/// A client that never reads is dropped with 1013 once its queue fills;
/// the node stays bounded and another user keeps receiving everything.
#[actix_web::test]
async fn a_client_that_never_reads_is_dropped_and_others_keep_receiving() {
    let cluster = Cluster::start().await;
    let g = cluster
        .gateway_with(|c| {
            c.limits.queue_frames = 64;
            c.limits.queue_bytes = 512 * 1024;
            c.limits.send_timeout = Duration::from_secs(2);
        })
        .await;
    let _stuck = raw_upgrade(g.port, &token("sloth")).await;
    let (mut healthy, _) = g.connect("hal").await;
    eventually("both connected", Duration::from_secs(5), || async {
        g.connections().await == 2
    })
    .await;

    // Enough to fill the kernel's socket buffers (several MB on loopback)
    // as well as the node's queue.
    let body = serde_json::json!({
        "recipients": ["sloth", "hal"],
        "title": "t",
        "message": "x".repeat(9000),
        "metadata": {"pad": "y".repeat(15_000)},
    })
    .to_string();
    const COUNT: usize = 300;
    let send = async {
        let mut sent = Vec::new();
        for _ in 0..COUNT {
            sent.push(cluster.send_raw(&body).await[1]);
        }
        sent
    };
    let receive = async {
        let mut received = Vec::new();
        for _ in 0..COUNT {
            received.push(healthy.notification_id().await);
        }
        received
    };
    let (sent, received) = tokio::join!(send, receive);
    assert_eq!(received, sent);
    eventually(
        "the stuck client dropped",
        Duration::from_secs(15),
        || async { g.connections().await == 1 },
    )
    .await;
    let ids = cluster.notify(&["hal"], "after").await;
    assert_eq!(healthy.notification_id().await, ids[0]);
}

#[actix_web::test]
async fn a_silent_client_is_closed_after_two_heartbeats() {
    let cluster = Cluster::start().await;
    let g = cluster
        .gateway_with(|c| c.limits.heartbeat = Duration::from_secs(1))
        .await;
    let (mut dead, welcome) = g.connect("zombie").await;
    assert_eq!(welcome["heartbeat_s"], 1);
    dead.auto_pong = false;
    let (mut alive, _) = g.connect("lively").await;
    // The live client keeps reading (and so answering pings) meanwhile.
    let closed = tokio::select! {
        closed = dead.closed() => closed,
        frame = alive.next() => panic!("unexpected frame {frame:?}"),
    };
    assert_eq!(closed, (Some(1001), "heartbeat timeout".into()));
    // The client that answers pings outlived it.
    let ids = cluster.notify(&["lively"], "still here").await;
    assert_eq!(alive.notification_id().await, ids[0]);
}

#[actix_web::test]
async fn drain_closes_every_connection_with_1012_and_unsubscribes() {
    let cluster = Cluster::start().await;
    let mut g = cluster.gateway().await;
    let mut clients = Vec::new();
    for i in 0..5 {
        clients.push(g.connect(&format!("u{i}")).await.0);
    }
    // Queued frames are flushed before the close.
    let ids = cluster.notify(&["u0"], "last words").await;
    assert_eq!(clients[0].notification_id().await, ids[0]);
    assert_eq!(cluster.subscribed_channels().await.len(), 5);

    g.shut_down().await;
    for client in &mut clients {
        assert_eq!(
            client.closed().await,
            (Some(1012), "server restarting, reconnect".into())
        );
    }
    assert!(cluster.subscribed_channels().await.is_empty());
}

#[actix_web::test]
async fn sigterm_drains_the_real_process() {
    let cluster = Cluster::start().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_notify-gateway"))
        .env("GATEWAY_ADDR", format!("127.0.0.1:{port}"))
        .env("DATABASE_URL", &cluster.db.url)
        .env("REDIS_URL", &cluster.redis_url)
        .env("JWT_SECRET", JWT_SECRET)
        .env("CHANNEL_PREFIX", &cluster.prefix)
        .env("DRAIN_TIMEOUT_SECS", "10")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    eventually("gateway process ready", Duration::from_secs(20), || async {
        awc::Client::new()
            .get(format!("http://127.0.0.1:{port}/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    let base = format!("ws://127.0.0.1:{port}");
    let (mut a, _) = WsClient::connect_as(&base, &token("a")).await;
    let (mut b, _) = WsClient::connect_as(&base, &token("b")).await;
    let ids = cluster.notify(&["a"], "before").await;
    assert_eq!(a.notification_id().await, ids[0]);

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    for client in [&mut a, &mut b] {
        assert_eq!(client.closed().await.0, Some(1012));
    }
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
}

/// Redis killed and restarted under connected clients: they stay
/// connected and delivery resumes once the subscriber is back.
#[actix_web::test]
async fn delivery_resumes_after_redis_restarts() {
    let mut redis = RedisServer::start().await;
    let cluster = Cluster::start_on(redis.url()).await;
    let g = cluster.gateway().await;
    let (mut client, _) = g.connect("rita").await;
    let ids = cluster.notify(&["rita"], "before").await;
    assert_eq!(client.notification_id().await, ids[0]);

    redis.stop();
    eventually(
        "gateway notices Redis is gone",
        Duration::from_secs(10),
        || async { g.ready().await.0 == 503 },
    )
    .await;
    assert_eq!(g.ready().await.1["redis"], "down");
    assert_eq!(g.connections().await, 1);

    redis.restart().await;
    eventually("gateway resubscribed", Duration::from_secs(15), || async {
        g.ready().await.0 == 200
    })
    .await;
    // Coming back, the node asked every connection to catch up from MySQL.
    assert_eq!(g.ready().await.1["redis_resyncs"], 1);
    let resumed = client.text().await;
    assert_eq!(resumed["type"], "resumed", "{resumed}");
    assert_eq!(resumed["count"], 0);
    let ids = cluster.notify(&["rita"], "after").await;
    match client.next().await {
        Received::Text(frame) => assert_eq!(frame["notification"]["id"], ids[0]),
        other => panic!("expected the notification, got {other:?}"),
    }
}

/// The periodic health check of the subscriber connection must not itself
/// break the connection (a subscribed connection answers PING with an
/// array), or every check would open a gap in delivery.
#[actix_web::test]
async fn subscriber_health_pings_keep_the_connection() {
    let cluster = Cluster::start().await;
    let g = cluster
        .gateway_with(|c| c.redis_ping_every = Duration::from_millis(50))
        .await;
    let (mut client, _) = g.connect("pat").await;
    eventually("three health pings", Duration::from_secs(10), || async {
        g.ready().await.1["redis_pings"].as_u64().unwrap() >= 3
    })
    .await;
    assert_eq!(g.ready().await.1["redis_reconnects"], 0);
    let ids = cluster.notify(&["pat"], "still subscribed").await;
    assert_eq!(client.notification_id().await, ids[0]);
}
