use std::time::Duration;

use notify_testkit::eventually;
use serde_json::json;

use crate::helpers::*;

/// A on gateway 1 and gateway 2, B on gateway 2: A's notification reaches
/// both of A's connections and never B's; a read on one of A's devices
/// reaches the other.
#[actix_web::test]
async fn delivers_to_every_connection_of_the_user_on_any_node_and_no_one_else() {
    let cluster = Cluster::start().await;
    let g1 = cluster.gateway().await;
    let g2 = cluster.gateway().await;
    let (mut a1, welcome) = g1.connect("alice").await;
    let (mut a2, _) = g2.connect("alice").await;
    let (mut b, _) = g2.connect("bob").await;
    assert_eq!(welcome["unread_count"], 0);
    assert_ne!(welcome["node"], "");
    assert_eq!(welcome["heartbeat_s"], 25);
    assert_eq!(welcome["session_id"].as_str().unwrap().len(), 32);

    let for_alice = cluster.notify(&["alice"], "for alice").await;
    let frame = a1.text().await;
    assert_eq!(frame["type"], "notification");
    assert_eq!(frame["notification"]["id"], for_alice[0]);
    assert_eq!(frame["notification"]["user_id"], "alice");
    assert_eq!(frame["notification"]["message"], "for alice");
    assert_eq!(a2.text().await, frame);

    // Bob's first frame is his own notification, sent after Alice's: hers
    // never reached him.
    let for_bob = cluster.notify(&["bob"], "for bob").await;
    assert_eq!(b.notification_id().await, for_bob[0]);

    // Reading on one device tells the other (and the reader).
    a1.send(&json!({"type": "read", "ids": for_alice}).to_string())
        .await;
    assert_eq!(a2.text().await, json!({"type": "read", "ids": for_alice}));
    assert_eq!(a1.text().await, json!({"type": "read", "ids": for_alice}));

    let more = cluster.notify(&["alice"], "two").await;
    assert_eq!(a1.notification_id().await, more[0]);
    assert_eq!(a2.notification_id().await, more[0]);
    a2.send(r#"{"type":"read_all"}"#).await;
    assert_eq!(
        a1.text().await,
        json!({"type": "read_all", "up_to": more[0]})
    );
    assert_eq!(
        a2.text().await,
        json!({"type": "read_all", "up_to": more[0]})
    );

    // A reconnecting device sees the stored unread count.
    cluster.notify(&["alice"], "three").await;
    let (_, welcome) = g1.connect("alice").await;
    assert_eq!(welcome["unread_count"], 1);
}

#[actix_web::test]
async fn one_subscription_per_user_per_node_and_none_after_the_last_leaves() {
    let cluster = Cluster::start().await;
    let g = cluster.gateway().await;
    let (mut first, _) = g.connect("carol").await;
    let (mut second, _) = g.connect("carol").await;
    let channel = format!("{}user:carol", cluster.prefix);
    assert_eq!(cluster.subscribed_channels().await, vec![channel.clone()]);

    // Two connections of one user on one node: each gets each event once.
    let ids = cluster.notify(&["carol"], "one").await;
    let ids2 = cluster.notify(&["carol"], "two").await;
    for client in [&mut first, &mut second] {
        assert_eq!(client.notification_id().await, ids[0]);
        assert_eq!(client.notification_id().await, ids2[0]);
    }

    first.send_message(awc::ws::Message::Close(None)).await;
    assert_eq!(first.closed().await.0, None);
    eventually("one connection left", Duration::from_secs(5), || async {
        g.connections().await == 1
    })
    .await;
    assert_eq!(cluster.subscribed_channels().await, vec![channel]);
    let ids3 = cluster.notify(&["carol"], "three").await;
    assert_eq!(second.notification_id().await, ids3[0]);

    drop(second);
    eventually("channel unsubscribed", Duration::from_secs(5), || async {
        cluster.subscribed_channels().await.is_empty()
    })
    .await;
    assert_eq!(g.connections().await, 0);
}

#[actix_web::test]
async fn answers_pings_and_refuses_bad_frames_without_closing() {
    let cluster = Cluster::start().await;
    let g = cluster.gateway().await;
    let (mut client, _) = g.connect("dave").await;

    client.send(r#"{"type":"ping"}"#).await;
    assert_eq!(client.text().await, json!({"type": "pong"}));
    client
        .send_message(awc::ws::Message::Ping("hi".into()))
        .await;
    assert_eq!(
        client.next().await,
        notify_testkit::ws::Received::Pong(b"hi".to_vec())
    );

    let too_many_ids = json!({"type": "read", "ids": (1..=1001).collect::<Vec<u64>>()}).to_string();
    let deep = format!(
        r#"{{"type":"read","ids":{}1{}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    for (frame, code) in [
        ("{not json", "malformed_frame"),
        (r#"{"type":"dance"}"#, "unknown_type"),
        (r#"{"type":"read","ids":"all"}"#, "invalid_frame"),
        (r#"{"type":"read","ids":[]}"#, "invalid_frame"),
        (&too_many_ids, "invalid_frame"),
        (&deep, "invalid_frame"),
        (r#"{"type":"auth","token":"x"}"#, "invalid_frame"),
    ] {
        client.send(frame).await;
        let reply = client.text().await;
        assert_eq!(reply["type"], "error", "{frame}");
        assert_eq!(reply["code"], code, "{frame}");
    }
    client
        .send_message(awc::ws::Message::Binary("x".into()))
        .await;
    assert_eq!(client.text().await["code"], "unsupported_frame");

    // Still connected and delivering.
    let ids = cluster.notify(&["dave"], "still here").await;
    assert_eq!(client.notification_id().await, ids[0]);
    // A read of someone else's notification changes nothing.
    let erin = cluster.notify(&["erin"], "private").await;
    client
        .send(&json!({"type": "read", "ids": erin}).to_string())
        .await;
    client.send(r#"{"type":"ping"}"#).await;
    assert_eq!(client.text().await, json!({"type": "pong"}));
}

#[actix_web::test]
async fn repeated_abuse_closes_with_1008() {
    let cluster = Cluster::start().await;
    let g = cluster.gateway().await;
    let (mut client, _) = g.connect("mallory").await;
    for _ in 0..20 {
        client.send("garbage").await;
    }
    let mut errors = 0;
    let close = loop {
        match client.next().await {
            notify_testkit::ws::Received::Text(frame) => {
                assert_eq!(frame["code"], "malformed_frame");
                errors += 1;
            }
            other => break other,
        }
    };
    assert_eq!(errors, 10);
    assert_eq!(
        close,
        notify_testkit::ws::Received::Close(Some(1008), "too many invalid frames".into())
    );
}

#[actix_web::test]
async fn oversized_frame_closes_with_1009() {
    let cluster = Cluster::start().await;
    let g = cluster.gateway().await;
    let (mut client, _) = g.connect("frank").await;
    let big = format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(70 * 1024));
    client.send(&big).await;
    assert_eq!(
        client.closed().await,
        (Some(1009), "frame too large".into())
    );
}
