//! Abuse limits: inbound frame rate, connections per node, per user and per
//! client address.

use notify_testkit::token;
use notify_testkit::ws::{Received, WsClient};

use crate::helpers::*;

#[actix_web::test]
async fn a_frame_flood_is_warned_then_closed_and_others_keep_receiving() {
    let cluster = Cluster::start().await;
    let g = tight_frame_budget(&cluster).await;
    let (mut flood, _) = g.connect("flo").await;
    let (mut calm, _) = g.connect("cal").await;
    for _ in 0..20 {
        flood.send(r#"{"type":"ping"}"#).await;
    }
    let (pongs, warned, close) = answers_until_closed(&mut flood).await;
    assert_eq!((pongs, warned), (5, 1));
    assert_eq!(close, Received::Close(Some(1008), "too many frames".into()));
    let ids = cluster.notify(&["cal"], "unaffected").await;
    assert_eq!(calm.notification_id().await, ids[0]);
    // Counted: one warning, one close.
    assert_eq!(
        g.metric(r#"notify_gateway_refusals_total{code="rate_limited"}"#)
            .await,
        1
    );
    assert_eq!(
        g.metric(r#"notify_gateway_closes_total{reason="too many frames"}"#)
            .await,
        1
    );
}

#[actix_web::test]
async fn a_full_node_and_a_user_over_the_cap_are_refused_before_the_upgrade() {
    let cluster = Cluster::start().await;
    let g = cluster
        .gateway_with(|c| {
            c.limits.max_connections = 3;
            c.limits.max_connections_per_user = 2;
        })
        .await;
    let (_a1, _) = g.connect("ann").await;
    let (_a2, _) = g.connect("ann").await;
    let auth = format!("Bearer {}", token("ann"));
    let third = WsClient::connect(&format!("{}/ws", g.base), &[("authorization", &auth)]).await;
    assert_eq!(third.err(), Some(429));
    let (_b, _) = g.connect("ben").await;
    let auth = format!("Bearer {}", token("cid"));
    let full = WsClient::connect(&format!("{}/ws", g.base), &[("authorization", &auth)]).await;
    assert_eq!(full.err(), Some(503));
    assert_eq!(g.connections().await, 3);
    for (code, count) in [("too_many_connections", 1), ("node_full", 1)] {
        let series = format!("notify_gateway_refusals_total{{code=\"{code}\"}}");
        assert_eq!(g.metric(&series).await, count, "{code}");
    }
    assert_eq!(g.metric("notify_gateway_connections").await, 3);
}

#[actix_web::test]
async fn new_connections_per_address_are_limited_behind_a_trusted_proxy() {
    let cluster = Cluster::start().await;
    let g = cluster
        .gateway_with(|c| {
            c.limits.connect_rate = 1;
            c.limits.connect_burst = 2;
        })
        .await;
    let url = format!("{}/ws?token={}", g.base, token("dee"));
    let from = |addr: &'static str| [("x-forwarded-for", addr)];
    // The test talks to the node from 127.0.0.1, a trusted proxy, so the
    // address in X-Forwarded-For is the client's.
    for _ in 0..2 {
        let mut ok = WsClient::connect(&url, &from("203.0.113.7")).await.unwrap();
        assert_eq!(ok.text().await["type"], "welcome");
    }
    assert_eq!(
        WsClient::connect(&url, &from("203.0.113.7")).await.err(),
        Some(429)
    );
    // Another client address has its own budget; a forged hop before the
    // real one does not help the limited client.
    let mut other = WsClient::connect(&url, &from("198.51.100.9"))
        .await
        .unwrap();
    assert_eq!(other.text().await["type"], "welcome");
    assert_eq!(
        WsClient::connect(&url, &from("198.51.100.9, 203.0.113.7"))
            .await
            .err(),
        Some(429)
    );
}

#[actix_web::test]
async fn forwarded_for_is_ignored_from_untrusted_peers() {
    let cluster = Cluster::start().await;
    let g = cluster
        .gateway_with(|c| {
            c.trusted_proxies = Vec::new();
            c.limits.connect_rate = 1;
            c.limits.connect_burst = 1;
        })
        .await;
    let url = format!("{}/ws?token={}", g.base, token("eve"));
    let mut first = WsClient::connect(&url, &[("x-forwarded-for", "192.0.2.1")])
        .await
        .unwrap();
    assert_eq!(first.text().await["type"], "welcome");
    // A different claimed address does not reset the real peer's budget.
    assert_eq!(
        WsClient::connect(&url, &[("x-forwarded-for", "192.0.2.2")])
            .await
            .err(),
        Some(429)
    );
}

#[actix_web::test]
async fn a_client_trickling_its_headers_is_dropped_while_others_receive() {
    let cluster = Cluster::start().await;
    let g = cluster.gateway().await;
    let (mut ann, _) = g.connect("ann").await;
    let addr = format!("127.0.0.1:{}", g.port).parse().unwrap();
    let slow = notify_testkit::slowloris(
        addr,
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(30),
    );
    let delivery = async {
        let ids = cluster.notify(&["ann"], "meanwhile").await;
        assert_eq!(ann.notification_id().await, ids[0]);
    };
    let (held, ()) = tokio::join!(slow, delivery);
    println!("a one-byte-a-second client was dropped after {held:?}");
}

/// Protocol pings cost the same as any frame, before and after
/// authentication.
#[actix_web::test]
async fn protocol_pings_spend_the_frame_budget() {
    use awc::ws::Message;
    let cluster = Cluster::start().await;
    let g = tight_frame_budget(&cluster).await;

    let (mut pinger, _) = g.connect("pinger").await;
    for _ in 0..20 {
        pinger.send_message(Message::Ping("x".into())).await;
    }
    let (pongs, warned, close) = answers_until_closed(&mut pinger).await;
    assert_eq!((pongs, warned), (5, 1));
    assert_eq!(close, Received::Close(Some(1008), "too many frames".into()));

    // Not yet authenticated: the first frame over the budget closes.
    let mut anonymous = WsClient::connect(&format!("{}/ws", g.base), &[])
        .await
        .unwrap();
    for _ in 0..20 {
        anonymous.send_message(Message::Ping("x".into())).await;
    }
    assert_eq!(
        anonymous.closed().await,
        (Some(1008), "too many frames".into())
    );
}

/// One user with many connections waiting on MySQL holds at most one
/// connection of the node's pool: another user's `welcome` still has its
/// unread count.
#[actix_web::test]
async fn one_user_cannot_take_the_nodes_mysql_pool() {
    use diesel_async::{AsyncConnection, AsyncMysqlConnection, RunQueryDsl};
    let cluster = Cluster::start().await;
    let g = cluster
        .gateway_with(|c| {
            c.database_pool_size = 2;
            c.limits.frame_rate = 1000;
            c.limits.frame_burst = 1000;
        })
        .await;
    let locked = cluster.notify(&["hog"], "locked").await[0];
    cluster.notify(&["fair"], "unread").await;

    let mut hogs = Vec::new();
    for _ in 0..20 {
        hogs.push(g.connect("hog").await.0);
    }
    // Hold a lock on the hog's notification: marking it read waits.
    let mut lock = AsyncMysqlConnection::establish(&cluster.db.url)
        .await
        .unwrap();
    diesel::sql_query("BEGIN").execute(&mut lock).await.unwrap();
    diesel::sql_query(format!(
        "SELECT id FROM notifications WHERE id = {locked} FOR UPDATE"
    ))
    .execute(&mut lock)
    .await
    .unwrap();
    for hog in &mut hogs {
        hog.send(&format!(r#"{{"type":"read","ids":[{locked}]}}"#))
            .await;
    }
    let waiting = format!(
        "SELECT COUNT(*) AS n FROM information_schema.processlist \
         WHERE db = '{}' AND id <> CONNECTION_ID() AND info LIKE '%FOR UPDATE%'",
        cluster.db.name
    );
    notify_testkit::eventually(
        "a read mark waits",
        std::time::Duration::from_secs(10),
        || async { cluster.db.count(&waiting).await >= 1 },
    )
    .await;

    let (_fair, welcome) = g.connect("fair").await;
    assert_eq!(welcome["unread_count"], 1, "{welcome}");
    assert_eq!(cluster.db.count(&waiting).await, 1);
    diesel::sql_query("ROLLBACK")
        .execute(&mut lock)
        .await
        .unwrap();
}

/// A node allowing one frame a second after a burst of five.
async fn tight_frame_budget(cluster: &Cluster) -> Gateway {
    cluster
        .gateway_with(|c| {
            c.limits.frame_rate = 1;
            c.limits.frame_burst = 5;
        })
        .await
}

/// Reads until the node stops answering: the pongs (protocol or `pong`
/// frames) and `rate_limited` warnings received, and what ended it.
async fn answers_until_closed(client: &mut WsClient) -> (usize, usize, Received) {
    let (mut pongs, mut warned) = (0, 0);
    loop {
        match client.next().await {
            Received::Pong(_) => pongs += 1,
            Received::Text(frame) if frame["type"] == "pong" => pongs += 1,
            Received::Text(frame) if frame["code"] == "rate_limited" => warned += 1,
            other => return (pongs, warned, other),
        }
    }
}
