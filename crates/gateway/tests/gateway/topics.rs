//! Topics, roles, user lists, everyone and presence, with two gateway
//! nodes, the api, real Redis and real WebSocket clients.
//!
//! Absence is shown without waiting: after an event a client must not get,
//! a "sentinel" event is sent to it through its own user channel, and the
//! next frame it reads must be the sentinel.

use std::time::Duration;

use notify_gateway::config::Presence;
use notify_testkit::ws::WsClient;
use notify_testkit::{eventually, token_with_roles, unique};
use serde_json::{json, Value};

use crate::faults::GatewayProcess;
use crate::helpers::*;

const STATUS_ROOM: &str = r#"
    [[topics]]
    pattern = "status"
    subscribe = ["*"]
    publish = ["admin"]

    [[topics]]
    pattern = "ops.*"
    subscribe = ["ops"]

    [[topics]]
    pattern = "space:*"
    subscribe = ["*"]
    presence = true
"#;

impl Cluster {
    /// Posts a `/v1/events` body; returns status and reply.
    async fn event(&self, body: Value) -> (u16, Value) {
        self.as_server("POST", "/v1/events", Some(body)).await
    }

    /// Subscribers of a Redis channel of this test (its name after the
    /// prefix).
    async fn numsub(&self, channel: &str) -> u64 {
        let client = redis::Client::open(self.redis_url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let reply: (String, u64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(format!("{}{channel}", self.prefix))
            .query_async(&mut conn)
            .await
            .unwrap();
        reply.1
    }

    /// Sends a sentinel to `user` alone and returns its event id.
    async fn sentinel(&self, user: &str) -> String {
        let (status, reply) = self
            .event(json!({"event": "sentinel", "users": [user]}))
            .await;
        assert_eq!(status, 202, "{reply}");
        reply["id"].as_str().unwrap().to_owned()
    }

    async fn presence(&self, topic: &str) -> Value {
        let (status, reply) = self
            .as_server("GET", &format!("/v1/topics/{topic}/presence"), None)
            .await;
        assert_eq!(status, 200, "{reply}");
        reply
    }
}

async fn connect(gateway: &Gateway, user: &str, roles: &[&str]) -> WsClient {
    WsClient::connect_as(&gateway.base, &token_with_roles(user, roles))
        .await
        .0
}

/// Sends a topic request and returns the answer (skipping presence frames
/// of topics the client is in).
async fn ask(client: &mut WsClient, request: Value) -> Value {
    client.send(&request.to_string()).await;
    loop {
        let frame = client.text().await;
        if frame["type"] != "presence" {
            return frame;
        }
    }
}

async fn subscribe(client: &mut WsClient, topic: &str) -> Value {
    let reply = ask(client, json!({"type": "subscribe", "topic": topic})).await;
    assert_eq!(reply["type"], "subscribed", "{reply}");
    assert_eq!(reply["topic"], topic);
    reply
}

/// The next frame, which must be an event named `event`.
async fn event(client: &mut WsClient, event: &str) -> Value {
    let frame = client.text().await;
    assert_eq!(frame["type"], "event", "{frame}");
    assert_eq!(frame["event"], event, "{frame}");
    frame
}

/// The next frame must be the sentinel `id`: nothing came before it.
async fn nothing_before(client: &mut WsClient, id: &str) {
    let frame = client.text().await;
    assert_eq!(
        frame["event"], "sentinel",
        "expected nothing but the sentinel, got {frame}"
    );
    assert_eq!(frame["id"], id);
}

#[actix_web::test]
async fn topic_events_reach_subscribers_on_every_node_and_only_those_nodes() {
    let cluster = Cluster::start().await;
    let (g1, g2) = (cluster.gateway().await, cluster.gateway().await);
    let (alice, bob) = (unique("alice"), unique("bob"));
    let mut a = connect(&g1, &alice, &[]).await;
    let mut b = connect(&g2, &bob, &[]).await;
    assert_eq!(subscribe(&mut a, "news").await["snapshot"], Value::Null);
    subscribe(&mut b, "news").await;
    assert_eq!(cluster.numsub("topic:{news}").await, 2);

    let data = json!({"headline": "Up", "nested": {"list": [1, 2.5, null]}});
    let (status, reply) = cluster
        .event(json!({"event": "news:published", "topic": "news", "data": data}))
        .await;
    assert_eq!(status, 202, "{reply}");
    let (got_a, got_b) = (
        event(&mut a, "news:published").await,
        event(&mut b, "news:published").await,
    );
    assert_eq!(got_a, got_b);
    assert_eq!(got_a["data"], data);
    assert_eq!(got_a["topic"], "news");
    assert_eq!(got_a["id"], reply["id"]);
    assert!(got_a["sent_at"].as_str().unwrap().ends_with('Z'));

    // Bob leaves: his node unsubscribes and receives none of the topic.
    let reply = ask(&mut b, json!({"type": "unsubscribe", "topic": "news"})).await;
    assert_eq!(reply, json!({"type": "unsubscribed", "topic": "news"}));
    eventually("g2 unsubscribed", Duration::from_secs(5), || async {
        cluster.numsub("topic:{news}").await == 1
    })
    .await;
    let received = g2.metric("notify_gateway_broadcasts_received_total").await;
    for n in 0..5 {
        cluster
            .event(json!({"event": "news:published", "topic": "news", "data": n}))
            .await;
    }
    for n in 0..5 {
        assert_eq!(event(&mut a, "news:published").await["data"], n);
    }
    let id = cluster.sentinel(&bob).await;
    nothing_before(&mut b, &id).await;
    assert_eq!(
        g2.metric("notify_gateway_broadcasts_received_total").await,
        received
    );
    assert_eq!(
        g1.metric("notify_gateway_topic_subscriptions{topic=\"news\"}")
            .await,
        1
    );

    // Unsubscribing from a topic not held is answered the same way.
    let reply = ask(&mut b, json!({"type": "unsubscribe", "topic": "news"})).await;
    assert_eq!(reply["type"], "unsubscribed");
    // The last member leaving (by disconnecting) unsubscribes g1 too.
    drop(a);
    eventually("g1 unsubscribed", Duration::from_secs(5), || async {
        cluster.numsub("topic:{news}").await == 0
    })
    .await;
}

#[actix_web::test]
async fn a_retained_event_is_the_snapshot_of_later_subscribers() {
    let cluster = Cluster::start().await;
    let g = cluster.gateway().await;
    let topic = unique("status");
    let (status, reply) = cluster
        .event(json!({"event": "service:status", "topic": topic, "retain": true, "data": {"state": "degraded"}}))
        .await;
    assert_eq!(status, 202, "{reply}");
    let mut a = connect(&g, &unique("a"), &[]).await;
    let snapshot = subscribe(&mut a, &topic).await["snapshot"].clone();
    assert_eq!(snapshot["type"], "event");
    assert_eq!(snapshot["topic"], topic.as_str());
    assert_eq!(snapshot["data"], json!({"state": "degraded"}));
    assert_eq!(snapshot["id"], reply["id"]);

    let (status, _) = cluster
        .as_server("DELETE", &format!("/v1/topics/{topic}/snapshot"), None)
        .await;
    assert_eq!(status, 204);
    let mut b = connect(&g, &unique("b"), &[]).await;
    assert_eq!(subscribe(&mut b, &topic).await["snapshot"], Value::Null);
    let (status, reply) = cluster
        .as_server("DELETE", "/v1/topics/bad%20topic/snapshot", None)
        .await;
    assert_eq!(
        (status, reply["error"]["code"].as_str()),
        (400, Some("invalid_topic"))
    );
}

#[actix_web::test]
async fn roles_user_lists_and_everyone_reach_exactly_their_connections() {
    let cluster = Cluster::start().await;
    let (g1, g2) = (cluster.gateway().await, cluster.gateway().await);
    let (both, admin, plain) = (unique("both"), unique("admin"), unique("plain"));
    let mut c_both = connect(&g1, &both, &["admin", "ops"]).await;
    let mut c_admin = connect(&g2, &admin, &["admin"]).await;
    let mut c_plain = connect(&g2, &plain, &[]).await;
    eventually("role channels held", Duration::from_secs(5), || async {
        cluster.numsub("role:admin").await == 2 && cluster.numsub("role:ops").await == 1
    })
    .await;

    let (status, _) = cluster
        .event(json!({"event": "admin:alert", "roles": ["admin", "ops"], "data": 1}))
        .await;
    assert_eq!(status, 202);
    assert_eq!(
        event(&mut c_both, "admin:alert").await["roles"],
        json!(["admin", "ops"])
    );
    event(&mut c_admin, "admin:alert").await;
    // Once per connection, and never to a connection without the role.
    let id = cluster.sentinel(&both).await;
    nothing_before(&mut c_both, &id).await;
    let id = cluster.sentinel(&plain).await;
    nothing_before(&mut c_plain, &id).await;

    let (status, _) = cluster
        .event(json!({"event": "hello", "users": [plain, admin, plain]}))
        .await;
    assert_eq!(status, 202);
    let frame = event(&mut c_plain, "hello").await;
    assert!(frame.get("topic").is_none() && frame.get("roles").is_none());
    event(&mut c_admin, "hello").await;
    let id = cluster.sentinel(&plain).await;
    nothing_before(&mut c_plain, &id).await;
    let id = cluster.sentinel(&both).await;
    nothing_before(&mut c_both, &id).await;

    let (status, _) = cluster
        .event(json!({"event": "maintenance", "all": true, "data": {"in": 10}}))
        .await;
    assert_eq!(status, 202);
    for client in [&mut c_both, &mut c_admin, &mut c_plain] {
        assert_eq!(
            event(client, "maintenance").await["data"],
            json!({"in": 10})
        );
    }

    // Refusals change nothing: no event is published.
    for (body, code) in [
        (json!({"event": "x"}), "invalid_field"),
        (
            json!({"event": "x", "all": true, "users": ["a"]}),
            "invalid_field",
        ),
        (json!({"event": "x", "topic": "a b"}), "invalid_topic"),
        (
            json!({"event": "x", "roles": ["a"], "retain": true}),
            "invalid_field",
        ),
        (json!({"event": "bad name", "all": true}), "invalid_field"),
    ] {
        let (status, reply) = cluster.event(body.clone()).await;
        assert_eq!(
            (status, reply["error"]["code"].as_str()),
            (400, Some(code)),
            "{body}"
        );
    }
    let unauthenticated = awc::Client::new()
        .post(format!("{}/v1/events", cluster.api))
        .send_json(&json!({"event": "x", "all": true}))
        .await
        .unwrap();
    assert_eq!(unauthenticated.status().as_u16(), 401);
    let id = cluster.sentinel(&plain).await;
    nothing_before(&mut c_plain, &id).await;
}

#[actix_web::test]
async fn the_policy_decides_who_subscribes_and_who_publishes() {
    let cluster = Cluster::with_policy(STATUS_ROOM).await;
    let g1 = cluster.gateway().await;
    let g2 = cluster
        .gateway_with(|c| c.limits.max_topics_per_connection = 2)
        .await;
    let (user, admin) = (unique("user"), unique("admin"));
    let mut u = connect(&g1, &user, &["member"]).await;
    let mut a = connect(&g2, &admin, &["admin"]).await;
    subscribe(&mut u, "status").await;
    subscribe(&mut a, "status").await;

    let refused = ask(&mut u, json!({"type": "subscribe", "topic": "ops.deploys"})).await;
    assert_eq!(refused["type"], "error");
    assert_eq!(refused["code"], "forbidden");
    assert_eq!(refused["topic"], "ops.deploys");
    let refused = ask(
        &mut u,
        json!({"type": "publish", "topic": "status", "event": "admin:refresh-status", "data": {}}),
    )
    .await;
    assert_eq!(
        (refused["code"].as_str(), refused["topic"].as_str()),
        (Some("forbidden"), Some("status"))
    );
    let refused = ask(&mut u, json!({"type": "subscribe", "topic": "no spaces"})).await;
    assert_eq!(refused["code"], "invalid_topic");

    // The admin's refresh reaches everyone in the room, on both nodes.
    a.send(
        &json!({"type": "publish", "topic": "status", "event": "admin:refresh-status", "data": {"why": "deploy"}})
            .to_string(),
    )
    .await;
    for client in [&mut u, &mut a] {
        let frame = event(client, "admin:refresh-status").await;
        assert_eq!(frame["from"], admin.as_str());
        assert_eq!(frame["data"], json!({"why": "deploy"}));
        assert_eq!(frame["topic"], "status");
    }
    // The user's refused publish never went out.
    let id = cluster.sentinel(&user).await;
    nothing_before(&mut u, &id).await;

    // At most two topics per connection on g2; holding one again is fine.
    subscribe(&mut a, "space:1").await;
    let refused = ask(&mut a, json!({"type": "subscribe", "topic": "space:2"})).await;
    assert_eq!(refused["code"], "too_many_topics");
    subscribe(&mut a, "space:1").await;
    assert_eq!(
        g1.metric("notify_gateway_refusals_total{code=\"forbidden\"}")
            .await,
        2
    );
    assert_eq!(cluster.numsub("topic:{ops.deploys}").await, 0);
    assert_eq!(cluster.numsub("topic:{space:2}").await, 0);
}

#[actix_web::test]
async fn presence_announces_joins_and_leaves_and_lists_who_is_there() {
    let cluster = Cluster::with_policy(STATUS_ROOM).await;
    let fast = |c: &mut notify_gateway::Config| {
        c.presence = Presence {
            heartbeat: Duration::from_secs(1),
            grace: Duration::from_millis(1500),
        }
    };
    let g1 = cluster.gateway_with(fast).await;
    let g2 = cluster.gateway_with(fast).await;
    let topic = format!("space:{}", unique("s"));
    let (watcher, alice) = (unique("watcher"), unique("alice"));
    let mut w = connect(&g1, &watcher, &[]).await;
    subscribe(&mut w, &topic).await;
    assert_eq!(
        w.text().await,
        json!({"type": "presence", "topic": topic, "joined": watcher})
    );

    let mut a1 = connect(&g2, &alice, &[]).await;
    let mut a2 = connect(&g1, &alice, &[]).await;
    subscribe(&mut a1, &topic).await;
    subscribe(&mut a2, &topic).await;
    assert_eq!(
        w.text().await,
        json!({"type": "presence", "topic": topic, "joined": alice})
    );
    eventually(
        "both of alice's connections listed",
        Duration::from_secs(5),
        || async {
            let listed = cluster.presence(&topic).await;
            listed["count"] == 2
                && listed["users"]
                    .as_array()
                    .unwrap()
                    .contains(&json!({"user_id": alice, "connections": 2}))
        },
    )
    .await;

    // One connection left: alice is still there, nobody is told.
    drop(a1);
    eventually(
        "one connection of alice listed",
        Duration::from_secs(5),
        || async {
            cluster.presence(&topic).await["users"]
                .as_array()
                .unwrap()
                .contains(&json!({"user_id": alice, "connections": 1}))
        },
    )
    .await;
    // The last one leaves: after the grace period, everyone is told.
    let reply = ask(&mut a2, json!({"type": "unsubscribe", "topic": topic})).await;
    assert_eq!(reply["type"], "unsubscribed");
    assert_eq!(
        w.text().await,
        json!({"type": "presence", "topic": topic, "left": alice})
    );
    let listed = cluster.presence(&topic).await;
    assert_eq!(listed["count"], 1);
    assert_eq!(
        listed["users"],
        json!([{"user_id": watcher, "connections": 1}])
    );

    // A reconnect within the grace period shows neither a leave nor a join.
    let mut b1 = connect(&g2, &alice, &[]).await;
    subscribe(&mut b1, &topic).await;
    assert_eq!(w.text().await["joined"], alice.as_str());
    drop(b1);
    let mut b2 = connect(&g1, &alice, &[]).await;
    subscribe(&mut b2, &topic).await;
    // Counted on both nodes during g2's grace period, then through g1 only.
    for connections in [2, 1] {
        eventually(
            "alice's connections listed",
            Duration::from_secs(5),
            || async {
                cluster.presence(&topic).await["users"]
                    .as_array()
                    .unwrap()
                    .contains(&json!({"user_id": alice, "connections": connections}))
            },
        )
        .await;
    }
    let id = cluster.sentinel(&watcher).await;
    nothing_before(&mut w, &id).await;

    let (status, reply) = cluster
        .as_server("GET", "/v1/topics/status/presence", None)
        .await;
    assert_eq!(
        (status, reply["error"]["code"].as_str()),
        (404, Some("presence_disabled"))
    );
    let (status, _) = cluster
        .as_server("GET", "/v1/topics/a%20b/presence", None)
        .await;
    assert_eq!(status, 400);
}

#[actix_web::test]
async fn presence_of_a_killed_gateway_disappears_within_two_heartbeats() {
    let cluster = Cluster::with_policy(STATUS_ROOM).await;
    let policy = std::env::temp_dir().join(format!("{}.toml", unique("policy")));
    std::fs::write(&policy, STATUS_ROOM).unwrap();
    let g1 = cluster
        .gateway_with(|c| c.presence.heartbeat = Duration::from_secs(1))
        .await;
    let doomed = GatewayProcess::start_with(
        &cluster,
        &[
            ("TOPIC_POLICY", policy.to_str().unwrap()),
            ("NODE_HEARTBEAT_MS", "1000"),
        ],
    )
    .await;
    let topic = format!("space:{}", unique("k"));
    let (watcher, alice) = (unique("watcher"), unique("alice"));
    let mut w = connect(&g1, &watcher, &[]).await;
    subscribe(&mut w, &topic).await;
    assert_eq!(w.text().await["joined"], watcher.as_str());
    let (mut a, _) = WsClient::connect_as(&doomed.base, &token_with_roles(&alice, &[])).await;
    subscribe(&mut a, &topic).await;
    assert_eq!(w.text().await["joined"], alice.as_str());

    doomed.signal("-KILL");
    // Reaped by g1 within two heartbeats of the last one (about 2 s).
    let left = tokio::time::timeout(Duration::from_secs(10), w.text())
        .await
        .expect("the killed node's users leave");
    assert_eq!(
        left,
        json!({"type": "presence", "topic": topic, "left": alice})
    );
    let listed = cluster.presence(&topic).await;
    assert_eq!(
        listed["users"],
        json!([{"user_id": watcher, "connections": 1}])
    );
    let _ = std::fs::remove_file(policy);
}

#[actix_web::test]
async fn a_refresh_that_drops_a_role_leaves_the_topics_it_allowed() {
    let cluster = Cluster::with_policy(STATUS_ROOM).await;
    let g = cluster.gateway().await;
    let user = unique("ops");
    let mut c = connect(&g, &user, &["ops"]).await;
    subscribe(&mut c, "ops.deploys").await;
    subscribe(&mut c, "status").await;
    c.send(&json!({"type": "refresh", "token": token_with_roles(&user, &[])}).to_string())
        .await;
    assert_eq!(
        c.text().await,
        json!({"type": "unsubscribed", "topic": "ops.deploys"})
    );
    assert_eq!(c.text().await["type"], "refreshed");
    cluster
        .event(json!({"event": "deploy", "topic": "ops.deploys"}))
        .await;
    cluster
        .event(json!({"event": "status", "topic": "status"}))
        .await;
    // Still in `status`, no longer in `ops.deploys`.
    event(&mut c, "status").await;
    let id = cluster.sentinel(&user).await;
    nothing_before(&mut c, &id).await;
    eventually(
        "ops.deploys unsubscribed",
        Duration::from_secs(5),
        || async { cluster.numsub("topic:{ops.deploys}").await == 0 },
    )
    .await;
}
