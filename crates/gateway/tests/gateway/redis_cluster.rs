//! The cluster on a Redis Cluster (three masters, three replicas, started
//! here): notifications, topics with their retained snapshot, presence and
//! revocations over sharded pub/sub, and a master SIGKILLed mid-stream
//! without losing a notification.

use std::collections::BTreeSet;
use std::time::Duration;

use notify_protocol::ChannelNames;
use notify_testkit::eventually;
use notify_testkit::redis_cluster::RedisCluster;
use notify_testkit::ws::Received;
use serde_json::json;

use crate::helpers::*;

const POLICY: &str = r#"
[[topics]]
pattern = "room:*"
subscribe = ["*"]
presence = true
"#;

/// Everything that crosses Redis works when its keys and channels are
/// spread over three shards: user channels, a topic's retained event and
/// its channel (one slot), presence (scripts in the shared slot, announced
/// on its channel), and a revocation (key and control channel together).
#[actix_web::test]
async fn notifications_topics_presence_and_revocations_cross_a_redis_cluster() {
    let redis = RedisCluster::start().await;
    let cluster = Cluster::start_on_redis_cluster(redis.seeds(), POLICY).await;
    let g = cluster.gateway().await;
    let other = cluster.gateway().await;

    // Users whose channels live on different masters.
    let names = ChannelNames::new(cluster.prefix.clone());
    let mut users: Vec<String> = Vec::new();
    let mut masters = BTreeSet::new();
    for i in 0.. {
        let user = format!("spread{i}");
        if masters.insert(redis.master_of(&names.user(&user))) {
            users.push(user);
        }
        if masters.len() == 3 {
            break;
        }
    }
    for user in &users {
        let (mut client, _) = g.connect(user).await;
        let ids = cluster.notify(&[user], "hello").await;
        assert_eq!(client.notification_id().await, ids[0]);
    }

    // A retained topic event: the snapshot a later subscriber on another
    // node gets.
    let (status, reply) = cluster
        .as_server(
            "POST",
            "/v1/events",
            Some(json!({"event": "state", "topic": "room:1", "retain": true, "data": {"n": 1}})),
        )
        .await;
    assert_eq!(status, 202, "{reply}");
    let (mut watcher, _) = other.connect("watcher").await;
    watcher
        .send(&json!({"type": "subscribe", "topic": "room:1"}).to_string())
        .await;
    let subscribed = next_of(&mut watcher, "subscribed").await;
    assert_eq!(
        subscribed["snapshot"]["data"],
        json!({"n": 1}),
        "{subscribed}"
    );
    assert_eq!(subscribed["snapshot"]["id"], reply["id"]);
    assert_eq!(next_of(&mut watcher, "presence").await["joined"], "watcher");

    // Presence: a user joining on one node is announced on the other.
    let (mut joiner, _) = g.connect("joiner").await;
    joiner
        .send(&json!({"type": "subscribe", "topic": "room:1"}).to_string())
        .await;
    assert_eq!(next_of(&mut watcher, "presence").await["joined"], "joiner");

    // A live event reaches the subscriber on the other node.
    let (status, _) = cluster
        .as_server(
            "POST",
            "/v1/events",
            Some(json!({"event": "state", "topic": "room:1", "data": {"n": 2}})),
        )
        .await;
    assert_eq!(status, 202);
    assert_eq!(
        next_of(&mut watcher, "event").await["data"],
        json!({"n": 2})
    );

    // A revocation closes the user's connection on whichever node, and the
    // departure is announced.
    let (status, reply) = cluster
        .as_server("POST", "/v1/users/joiner/disconnect", None)
        .await;
    assert!((200..300).contains(&status), "{status} {reply}");
    let (code, _) = joiner.closed().await;
    assert_eq!(code, Some(1008));
    assert_eq!(next_of(&mut watcher, "presence").await["left"], "joiner");
}

/// The next frame of this type, skipping others.
async fn next_of(client: &mut notify_testkit::ws::WsClient, kind: &str) -> serde_json::Value {
    loop {
        let frame = client.text().await;
        if frame["type"] == kind {
            return frame;
        }
    }
}

/// The master owning a user's channel is SIGKILLed while notifications
/// stream to twelve users: its replica takes over, the gateway subscribes
/// again and catches up from MySQL, and every notification arrives.
#[actix_web::test]
async fn a_master_killed_mid_stream_loses_no_notification() {
    let mut redis = RedisCluster::start().await;
    let cluster = Cluster::start_on_redis_cluster(redis.seeds(), POLICY).await;
    let g = cluster.gateway().await;
    let names = ChannelNames::new(cluster.prefix.clone());
    let users: Vec<String> = (0..12).map(|i| format!("stream{i}")).collect();
    let mut clients = Vec::new();
    for user in &users {
        clients.push(g.connect(user).await.0);
    }
    let victim = redis.master_of(&names.user(&users[0]));
    let on_victim = users
        .iter()
        .filter(|user| redis.master_of(&names.user(user)) == victim)
        .count();
    assert!(on_victim >= 1);

    let mut sent: Vec<BTreeSet<u64>> = vec![BTreeSet::new(); users.len()];
    for round in 0..20 {
        if round == 5 {
            redis.kill(victim);
        }
        for (i, user) in users.iter().enumerate() {
            let ids = cluster.notify(&[user], &format!("round {round}")).await;
            sent[i].extend(ids);
        }
    }
    redis.wait_until_healthy().await;
    for (i, user) in users.iter().enumerate() {
        let ids = cluster.notify(&[user], "after the failover").await;
        sent[i].extend(ids);
    }

    for (i, client) in clients.iter_mut().enumerate() {
        let mut missing = sent[i].clone();
        let mut seen = BTreeSet::new();
        let mut frames = Vec::new();
        while !missing.is_empty() {
            let Some(Received::Text(frame)) = client.next_within(Duration::from_secs(10)).await
            else {
                panic!(
                    "{} is missing {missing:?}; frames: {frames:?}; subscriptions: {:?}; victim {victim}",
                    users[i],
                    redis.shard_subscriptions(&format!("*{}*", users[i]))
                );
            };
            if frame["type"] == "notification" {
                let id = frame["notification"]["id"].as_u64().unwrap();
                assert!(seen.insert(id), "{} got {id} twice", users[i]);
                missing.remove(&id);
                frames.push(id.to_string());
            } else {
                frames.push(frame["type"].to_string());
            }
        }
    }
    // The loss was noticed and caught up, not ridden out.
    eventually("the gateway resynced", Duration::from_secs(10), || async {
        g.ready().await.1["redis_resyncs"].as_u64().unwrap() >= 1
    })
    .await;
}

/// A user's slot moves to another master (resharding): the old owner drops
/// the subscription, the gateway subscribes on the new owner and catches
/// up, and notifications sent before, during and after arrive.
#[actix_web::test]
async fn a_slot_moved_to_another_master_keeps_delivering() {
    let redis = RedisCluster::start().await;
    let cluster = Cluster::start_on_redis_cluster(redis.seeds(), POLICY).await;
    let g = cluster.gateway().await;
    let names = ChannelNames::new(cluster.prefix.clone());
    let (mut client, _) = g.connect("moving").await;
    let before = cluster.notify(&["moving"], "before").await;
    assert_eq!(client.notification_id().await, before[0]);

    let channel = names.user("moving");
    let owner = redis.move_slot_of(&channel);
    assert_eq!(redis.master_of(&channel), owner);
    let mut sent = BTreeSet::new();
    for i in 0..5 {
        sent.extend(cluster.notify(&["moving"], &format!("after {i}")).await);
    }
    eventually(
        "subscribed on the new owner",
        Duration::from_secs(15),
        || async {
            redis
                .shard_subscriptions(&channel)
                .iter()
                .any(|(port, _, channels)| *port == owner && channels.contains(&channel))
        },
    )
    .await;
    sent.extend(cluster.notify(&["moving"], "settled").await);
    while !sent.is_empty() {
        let frame = client.text().await;
        if frame["type"] == "notification" {
            sent.remove(&frame["notification"]["id"].as_u64().unwrap());
        }
    }
}
