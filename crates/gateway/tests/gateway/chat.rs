//! Chat: conversations, messages, typing and read receipts, with two
//! gateway nodes, the api, real MySQL and Redis and real WebSocket clients.
//!
//! Absence is shown without waiting: after something a client must not
//! get, a sentinel event is sent to it through its own user channel, and
//! the next chat frame it reads must be the sentinel.

use std::time::Duration;

use notify_testkit::ws::WsClient;
use notify_testkit::{eventually, unique};
use serde_json::{json, Value};

use crate::helpers::*;

impl Cluster {
    /// Opens a conversation as `user`; returns status and conversation.
    async fn open(&self, user: &str, body: Value) -> (u16, Value) {
        let (status, reply) = self
            .as_user_with(user, "POST", "/api/conversations", Some(body))
            .await;
        (status, reply["conversation"].clone())
    }

    async fn direct(&self, user: &str, other: &str) -> u64 {
        let (status, conversation) = self
            .open(user, json!({"type": "direct", "members": [other]}))
            .await;
        assert!(status == 201 || status == 200, "{status} {conversation}");
        conversation["id"].as_u64().unwrap()
    }

    async fn conversation(&self, user: &str, id: u64) -> (u16, Value) {
        let (status, reply) = self
            .as_user(user, "GET", &format!("/api/conversations/{id}"))
            .await;
        (status, reply["conversation"].clone())
    }

    async fn chat_sentinel(&self, user: &str) -> String {
        let (status, reply) = self
            .as_server(
                "POST",
                "/v1/events",
                Some(json!({"event": "sentinel", "users": [user]})),
            )
            .await;
        assert_eq!(status, 202, "{reply}");
        reply["id"].as_str().unwrap().to_owned()
    }

    async fn stored_messages(&self, conversation: u64) -> i64 {
        self.db
            .count(&format!(
                "SELECT COUNT(*) AS n FROM messages WHERE conversation_id = {conversation}"
            ))
            .await
    }
}

/// The next frame other than a notification (offline notices may reach a
/// user whose session was not yet recorded when a message was sent).
async fn frame(client: &mut WsClient) -> Value {
    loop {
        let frame = client.text().await;
        if frame["type"] != "notification" {
            return frame;
        }
    }
}

async fn expect(client: &mut WsClient, kind: &str) -> Value {
    let frame = frame(client).await;
    assert_eq!(frame["type"], kind, "{frame}");
    frame
}

/// The next frame must be the sentinel `id`: nothing came before it.
async fn nothing_before(client: &mut WsClient, id: &str) {
    let frame = frame(client).await;
    assert_eq!(
        frame["event"], "sentinel",
        "expected nothing but the sentinel, got {frame}"
    );
    assert_eq!(frame["id"], id);
}

async fn send(client: &mut WsClient, conversation: u64, body: &str, client_id: &str) -> Value {
    client
        .send(
            &json!({"type": "message.send", "conversation_id": conversation,
                    "body": body, "client_id": client_id})
            .to_string(),
        )
        .await;
    let sent = expect(client, "message.sent").await;
    assert_eq!(sent["client_id"], client_id);
    sent["message"].clone()
}

#[actix_web::test]
async fn direct_messages_reach_every_device_of_both_users_across_nodes() {
    let cluster = Cluster::start().await;
    let (g1, g2) = (cluster.gateway().await, cluster.gateway().await);
    let (alice, bob) = (unique("alice"), unique("bob"));
    let (status, first) = cluster
        .open(&alice, json!({"type": "direct", "members": [bob]}))
        .await;
    assert_eq!(status, 201, "{first}");
    let id = first["id"].as_u64().unwrap();
    // One direct conversation per pair, whoever opens it.
    let (status, again) = cluster
        .open(&bob, json!({"type": "direct", "members": [alice, bob]}))
        .await;
    assert_eq!((status, again["id"].as_u64()), (200, Some(id)));
    assert_eq!(again["type"], "direct");
    assert_eq!(again["members"].as_array().unwrap().len(), 2);

    let (mut a1, _) = g1.connect(&alice).await;
    let (mut a2, _) = g2.connect(&alice).await;
    let (mut b, _) = g2.connect(&bob).await;

    // Over the WebSocket: the sender's connection gets `message.sent`, every
    // connection of both members gets `message`.
    let message = send(&mut a1, id, "hello bob", "c-1").await;
    assert_eq!(message["body"], "hello bob");
    assert_eq!(message["sender_id"], alice.as_str());
    assert_eq!(message["conversation_id"], id);
    assert_eq!(message["attachments"], json!([]));
    for client in [&mut b, &mut a2, &mut a1] {
        let got = expect(client, "message").await;
        assert_eq!(got["message"], message);
    }

    // Over HTTP, with attachments.
    let attachment = json!({"url": "https://files.example/p.png", "name": "p.png",
                            "mime_type": "image/png", "size": 2048});
    let (status, reply) = cluster
        .as_user_with(
            &bob,
            "POST",
            &format!("/api/conversations/{id}/messages"),
            Some(json!({"body": "hi alice", "client_id": "h-1", "attachments": [attachment]})),
        )
        .await;
    assert_eq!(status, 201, "{reply}");
    let by_http = reply["message"].clone();
    assert!(by_http["id"].as_u64() > message["id"].as_u64());
    assert_eq!(by_http["attachments"], json!([attachment]));
    for client in [&mut a1, &mut a2, &mut b] {
        assert_eq!(expect(client, "message").await["message"], by_http);
    }

    // History, newest first, with paging.
    let (status, page) = cluster
        .as_user(
            &alice,
            "GET",
            &format!("/api/conversations/{id}/messages?limit=1"),
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["messages"], json!([by_http]));
    let cursor = page["next_cursor"].as_u64().unwrap();
    let (_, older) = cluster
        .as_user(
            &alice,
            "GET",
            &format!("/api/conversations/{id}/messages?before={cursor}"),
        )
        .await;
    assert_eq!(older["messages"], json!([message]));
    assert_eq!(older["next_cursor"], Value::Null);
}

#[actix_web::test]
async fn a_repeated_client_id_stores_and_delivers_one_message() {
    let cluster = Cluster::start().await;
    let (g1, g2) = (cluster.gateway().await, cluster.gateway().await);
    let (alice, bob) = (unique("alice"), unique("bob"));
    let id = cluster.direct(&alice, &bob).await;
    let (mut a, _) = g1.connect(&alice).await;
    let (mut b, _) = g2.connect(&bob).await;

    let first = send(&mut a, id, "once", "retry-1").await;
    assert_eq!(expect(&mut b, "message").await["message"], first);
    assert_eq!(expect(&mut a, "message").await["message"], first);
    // The retry gets the stored message back, and nothing is delivered.
    let retried = send(&mut a, id, "once", "retry-1").await;
    assert_eq!(retried, first);
    let (status, reply) = cluster
        .as_user_with(
            &alice,
            "POST",
            &format!("/api/conversations/{id}/messages"),
            Some(json!({"body": "once", "client_id": "retry-1"})),
        )
        .await;
    assert_eq!((status, &reply["message"]), (200, &first));
    assert_eq!(cluster.stored_messages(id).await, 1);
    let sentinel = cluster.chat_sentinel(&bob).await;
    nothing_before(&mut b, &sentinel).await;

    // The same client_id from the other member is another message.
    let bobs = send(&mut b, id, "mine", "retry-1").await;
    assert_ne!(bobs["id"], first["id"]);
    assert_eq!(cluster.stored_messages(id).await, 2);
}

#[actix_web::test]
async fn typing_is_forwarded_to_the_others_at_most_once_per_interval() {
    let cluster = Cluster::start().await;
    let (g1, g2) = (cluster.gateway().await, cluster.gateway().await);
    let (alice, bob) = (unique("alice"), unique("bob"));
    let id = cluster.direct(&alice, &bob).await;
    let (mut a, _) = g1.connect(&alice).await;
    let (mut b1, _) = g1.connect(&bob).await;
    let (mut b2, _) = g2.connect(&bob).await;

    // Bob types on both devices, on two nodes, several times.
    let typing = json!({"type": "typing", "conversation_id": id}).to_string();
    for _ in 0..3 {
        b1.send(&typing).await;
        b2.send(&typing).await;
    }
    let got = expect(&mut a, "typing").await;
    assert_eq!(
        got,
        json!({"type": "typing", "conversation_id": id, "user_id": bob})
    );
    // Bob's typing goes neither back to him nor twice to alice...
    let sentinel = cluster.chat_sentinel(&alice).await;
    nothing_before(&mut a, &sentinel).await;
    let sentinel = cluster.chat_sentinel(&bob).await;
    for b in [&mut b1, &mut b2] {
        nothing_before(b, &sentinel).await;
    }
    // ...until the 2 s interval, which Redis holds for every node.
    let client = redis::Client::open(cluster.redis_url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let ttl: i64 = redis::cmd("PTTL")
        .arg(format!("{}typing:{id}:{bob}", cluster.prefix))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((1..=2000).contains(&ttl), "{ttl}");

    // Alice typing is her own signal, forwarded at once.
    a.send(&json!({"type": "typing", "conversation_id": id}).to_string())
        .await;
    assert_eq!(expect(&mut b1, "typing").await["user_id"], alice.as_str());
    assert_eq!(expect(&mut b2, "typing").await["user_id"], alice.as_str());
}

#[actix_web::test]
async fn read_receipts_and_unread_counts_agree_across_devices() {
    let cluster = Cluster::start().await;
    let (g1, g2) = (cluster.gateway().await, cluster.gateway().await);
    let (alice, bob) = (unique("alice"), unique("bob"));
    let id = cluster.direct(&alice, &bob).await;
    let (mut a1, _) = g1.connect(&alice).await;
    let (mut a2, _) = g2.connect(&alice).await;
    let (mut b, _) = g2.connect(&bob).await;

    let mut ids = Vec::new();
    for i in 0..3 {
        let message = send(&mut b, id, &format!("m{i}"), &format!("c{i}")).await;
        ids.push(message["id"].as_u64().unwrap());
        for client in [&mut a1, &mut a2, &mut b] {
            expect(client, "message").await;
        }
    }
    let unread = |user: String| {
        let cluster = &cluster;
        async move {
            let (status, list) = cluster.as_user(&user, "GET", "/api/conversations").await;
            assert_eq!(status, 200, "{list}");
            let conversation = &list["conversations"][0];
            assert_eq!(conversation["id"], id);
            conversation["unread_count"].as_u64().unwrap()
        }
    };
    assert_eq!(unread(alice.clone()).await, 3);
    // Her own messages never count for the sender.
    assert_eq!(unread(bob.clone()).await, 0);

    // Alice reads two on one device: her other device and bob hear it.
    a1.send(&json!({"type": "message.read", "conversation_id": id, "up_to": ids[1]}).to_string())
        .await;
    let receipt = json!({"type": "messages_read", "conversation_id": id,
                         "user_id": alice, "up_to": ids[1]});
    assert_eq!(expect(&mut a2, "messages_read").await, receipt);
    assert_eq!(expect(&mut b, "messages_read").await, receipt);
    assert_eq!(expect(&mut a1, "messages_read").await, receipt);
    assert_eq!(unread(alice.clone()).await, 1);

    // Over HTTP, past the last message: capped at the last one.
    let (status, reply) = cluster
        .as_user_with(
            &alice,
            "PUT",
            &format!("/api/conversations/{id}/read"),
            Some(json!({"up_to": ids[2] + 1000})),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply, json!({"up_to": ids[2], "unread_count": 0}));
    for client in [&mut a1, &mut a2, &mut b] {
        assert_eq!(expect(client, "messages_read").await["up_to"], ids[2]);
    }
    // A mark behind the current one changes nothing and tells nobody.
    a2.send(&json!({"type": "message.read", "conversation_id": id, "up_to": ids[0]}).to_string())
        .await;
    let sentinel = cluster.chat_sentinel(&bob).await;
    nothing_before(&mut b, &sentinel).await;
    let (_, conversation) = cluster.conversation(&bob, id).await;
    let marks: Vec<(String, u64)> = conversation["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["user_id"].as_str().unwrap().to_owned(),
                m["last_read_message_id"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(marks.contains(&(alice.clone(), ids[2])), "{marks:?}");
    assert_eq!(unread(alice).await, 0);
}

#[actix_web::test]
async fn outsiders_get_404_for_everything_and_receive_nothing() {
    let cluster = Cluster::start().await;
    let (g1, g2) = (cluster.gateway().await, cluster.gateway().await);
    let (alice, bob, eve) = (unique("alice"), unique("bob"), unique("eve"));
    let id = cluster.direct(&alice, &bob).await;
    let (mut a, _) = g1.connect(&alice).await;
    let (mut e, _) = g2.connect(&eve).await;

    let path = format!("/api/conversations/{id}");
    let requests = [
        ("GET", path.clone(), None),
        ("GET", format!("{path}/messages"), None),
        (
            "POST",
            format!("{path}/messages"),
            Some(json!({"body": "hi"})),
        ),
        ("PUT", format!("{path}/read"), Some(json!({"up_to": 1}))),
        (
            "POST",
            format!("{path}/members"),
            Some(json!({"members": [eve]})),
        ),
        (
            "DELETE",
            format!("{path}/members"),
            Some(json!({"members": [bob]})),
        ),
        ("GET", "/api/conversations/999999999".into(), None),
    ];
    for (method, path, body) in requests {
        let (status, reply) = cluster.as_user_with(&eve, method, &path, body).await;
        assert_eq!(status, 404, "{method} {path}: {reply}");
        assert_eq!(reply["error"]["code"], "conversation_not_found");
    }
    let (_, list) = cluster.as_user(&eve, "GET", "/api/conversations").await;
    assert_eq!(list["conversations"], json!([]));

    // Over the WebSocket: refused, naming the conversation and client_id.
    e.send(
        &json!({"type": "message.send", "conversation_id": id, "body": "x",
                   "client_id": "e1"})
        .to_string(),
    )
    .await;
    let refused = expect(&mut e, "error").await;
    assert_eq!(refused["code"], "conversation_not_found");
    assert_eq!(
        (
            refused["conversation_id"].as_u64(),
            refused["client_id"].as_str()
        ),
        (Some(id), Some("e1"))
    );
    for request in [
        json!({"type": "typing", "conversation_id": id}),
        json!({"type": "message.read", "conversation_id": id, "up_to": 1}),
    ] {
        e.send(&request.to_string()).await;
        assert_eq!(
            expect(&mut e, "error").await["code"],
            "conversation_not_found"
        );
    }
    assert_eq!(cluster.stored_messages(id).await, 0);

    // Members talk; eve hears none of it.
    send(&mut a, id, "private", "p1").await;
    a.send(&json!({"type": "typing", "conversation_id": id}).to_string())
        .await;
    expect(&mut a, "message").await;
    let sentinel = cluster.chat_sentinel(&eve).await;
    nothing_before(&mut e, &sentinel).await;
}

#[actix_web::test]
async fn groups_grow_and_shrink_and_a_removed_member_receives_nothing() {
    let cluster = Cluster::start().await;
    let (g1, g2) = (cluster.gateway().await, cluster.gateway().await);
    let (alice, bob, carol, dan) = (
        unique("alice"),
        unique("bob"),
        unique("carol"),
        unique("dan"),
    );
    let (status, group) = cluster
        .open(
            &alice,
            json!({"type": "group", "members": [bob, carol], "title": "Launch"}),
        )
        .await;
    assert_eq!(status, 201, "{group}");
    assert_eq!(
        (group["type"].as_str(), group["title"].as_str()),
        (Some("group"), Some("Launch"))
    );
    let id = group["id"].as_u64().unwrap();
    let (mut a, _) = g1.connect(&alice).await;
    let (mut b, _) = g2.connect(&bob).await;
    let (mut c, _) = g1.connect(&carol).await;

    let first = send(&mut b, id, "hello all", "g1").await;
    for client in [&mut a, &mut b, &mut c] {
        assert_eq!(expect(client, "message").await["message"], first);
    }

    // Any member adds; the newcomer starts with nothing unread.
    let (status, reply) = cluster
        .as_user_with(
            &bob,
            "POST",
            &format!("/api/conversations/{id}/members"),
            Some(json!({"members": [dan]})),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        reply["conversation"]["members"].as_array().unwrap().len(),
        4
    );
    let (_, dans) = cluster.conversation(&dan, id).await;
    assert_eq!(dans["unread_count"], 0);
    assert_eq!(dans["last_read_message_id"], first["id"]);

    // Only the creator removes others; anyone may leave.
    let (status, reply) = cluster
        .as_user_with(
            &bob,
            "DELETE",
            &format!("/api/conversations/{id}/members"),
            Some(json!({"members": [carol]})),
        )
        .await;
    assert_eq!(
        (status, reply["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    // A list with someone who is not a member removes nobody.
    let (status, reply) = cluster
        .as_user_with(
            &alice,
            "DELETE",
            &format!("/api/conversations/{id}/members"),
            Some(json!({"members": [carol, unique("stranger")]})),
        )
        .await;
    assert_eq!(
        (status, reply["error"]["code"].as_str()),
        (404, Some("member_not_found"))
    );
    assert_eq!(cluster.conversation(&carol, id).await.0, 200);
    let (status, _) = cluster
        .as_user(
            &alice,
            "DELETE",
            &format!("/api/conversations/{id}/members/{carol}"),
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = cluster.conversation(&carol, id).await;
    assert_eq!(status, 404);

    // From now on carol receives nothing of the group, and cannot write.
    let after = send(&mut a, id, "without carol", "g2").await;
    assert_eq!(expect(&mut b, "message").await["message"], after);
    let sentinel = cluster.chat_sentinel(&carol).await;
    nothing_before(&mut c, &sentinel).await;
    c.send(&json!({"type": "message.send", "conversation_id": id, "body": "x"}).to_string())
        .await;
    assert_eq!(
        expect(&mut c, "error").await["code"],
        "conversation_not_found"
    );
    assert_eq!(cluster.stored_messages(id).await, 2);

    let (status, _) = cluster
        .as_user_with(
            &bob,
            "DELETE",
            &format!("/api/conversations/{id}/members"),
            Some(json!({"members": [bob]})),
        )
        .await;
    assert_eq!(status, 204);
    let (_, group) = cluster.conversation(&alice, id).await;
    let members: Vec<&str> = group["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(members, [alice.as_str(), dan.as_str()]);
}

#[actix_web::test]
async fn bad_chat_requests_are_refused_and_store_nothing() {
    let cluster = Cluster::start().await;
    let g = cluster.gateway().await;
    let (alice, bob) = (unique("alice"), unique("bob"));
    let id = cluster.direct(&alice, &bob).await;
    let (mut a, _) = g.connect(&alice).await;

    let messages = format!("/api/conversations/{id}/messages");
    let file = |url: &str| json!({"url": url, "name": "f", "mime_type": "text/plain", "size": 1});
    let refusals = [
        (json!({"body": ""}), "empty_message"),
        (json!({"body": "x".repeat(4001)}), "message_too_long"),
        (
            json!({"body": "x", "client_id": "has space"}),
            "invalid_client_id",
        ),
        (
            json!({"body": "x", "attachments": vec![file("https://a/b"); 11]}),
            "too_many_attachments",
        ),
        (
            json!({"body": "x", "attachments": [file("javascript:alert(1)")]}),
            "invalid_attachment",
        ),
        (
            json!({"body": "x", "attachments": [{"url": "https://a/b"}]}),
            "invalid_body",
        ),
        (json!({"body": "x", "extra": 1}), "invalid_body"),
    ];
    for (body, code) in refusals {
        let (status, reply) = cluster
            .as_user_with(&alice, "POST", &messages, Some(body.clone()))
            .await;
        assert_eq!(
            (status, reply["error"]["code"].as_str()),
            (400, Some(code)),
            "{body}"
        );
        // The same over the WebSocket, where the frame parses.
        if code != "invalid_body" {
            let mut frame = body.clone();
            frame["type"] = json!("message.send");
            frame["conversation_id"] = json!(id);
            a.send(&frame.to_string()).await;
            let refused = expect(&mut a, "error").await;
            assert_eq!(refused["code"], code, "{frame}");
            assert_eq!(refused["conversation_id"], id);
        }
    }
    assert_eq!(cluster.stored_messages(id).await, 0);

    let conversations = [
        (json!({"type": "direct", "members": []}), "invalid_members"),
        (
            json!({"type": "direct", "members": [alice]}),
            "invalid_members",
        ),
        (
            json!({"type": "direct", "members": [bob, "carol"]}),
            "invalid_members",
        ),
        (
            json!({"type": "group", "members": [alice]}),
            "invalid_members",
        ),
        (
            json!({"type": "group", "members": [" bob"]}),
            "invalid_members",
        ),
        (
            json!({"type": "group", "members": [bob], "title": ""}),
            "invalid_title",
        ),
        (
            json!({"type": "channel", "members": [bob]}),
            "invalid_members",
        ),
        (
            json!({"type": "group", "members": (0..500).map(|i| format!("u{i}")).collect::<Vec<_>>()}),
            "too_many_members",
        ),
    ];
    for (body, code) in conversations {
        let (status, reply) = cluster
            .as_user_with(&alice, "POST", "/api/conversations", Some(body.clone()))
            .await;
        assert_eq!(
            (status, reply["error"]["code"].as_str()),
            (400, Some(code)),
            "{body}"
        );
    }
    let (_, list) = cluster.as_user(&alice, "GET", "/api/conversations").await;
    assert_eq!(list["conversations"].as_array().unwrap().len(), 1);
    let (status, reply) = cluster
        .as_user_with(
            &alice,
            "POST",
            &format!("/api/conversations/{id}/members"),
            Some(json!({"members": ["carol"]})),
        )
        .await;
    assert_eq!(
        (status, reply["error"]["code"].as_str()),
        (409, Some("not_a_group"))
    );
    let (status, reply) = cluster
        .as_user(&alice, "GET", "/api/conversations?before=nonsense")
        .await;
    assert_eq!(
        (status, reply["error"]["code"].as_str()),
        (400, Some("invalid_cursor"))
    );
}

#[actix_web::test]
async fn conversations_are_listed_newest_activity_first_with_what_was_missed() {
    let cluster = Cluster::start().await;
    let (alice, bob, carol) = (unique("alice"), unique("bob"), unique("carol"));
    let with_bob = cluster.direct(&alice, &bob).await;
    let with_carol = cluster.direct(&alice, &carol).await;
    let (_, group) = cluster
        .open(&alice, json!({"type": "group", "members": [bob, carol]}))
        .await;
    let group = group["id"].as_u64().unwrap();
    // Bob writes in the oldest conversation while alice is away.
    let (status, reply) = cluster
        .as_user_with(
            &bob,
            "POST",
            &format!("/api/conversations/{with_bob}/messages"),
            Some(json!({"body": "you there?"})),
        )
        .await;
    assert_eq!(status, 201, "{reply}");

    let (_, first) = cluster
        .as_user(&alice, "GET", "/api/conversations?limit=2")
        .await;
    let listed = first["conversations"].as_array().unwrap();
    let ids: Vec<u64> = listed.iter().map(|c| c["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [with_bob, group]);
    assert_eq!(listed[0]["unread_count"], 1);
    assert_eq!(listed[0]["last_message"], reply["message"]);
    assert_eq!(listed[1]["last_message"], Value::Null);
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, rest) = cluster
        .as_user(
            &alice,
            "GET",
            &format!("/api/conversations?limit=2&before={cursor}"),
        )
        .await;
    let ids: Vec<u64> = rest["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [with_carol]);
    assert_eq!(rest["next_cursor"], Value::Null);
}

#[actix_web::test]
async fn chat_rate_limits_refuse_and_store_nothing() {
    let cluster = Cluster::start().await;
    let g = cluster
        .gateway_with(|c| {
            c.chat.message_rate = 1;
            c.chat.message_burst = 2;
        })
        .await;
    let (alice, bob) = (unique("alice"), unique("bob"));
    let id = cluster.direct(&alice, &bob).await;
    let (mut a, _) = g.connect(&alice).await;
    send_and_echo(&mut a, id, "one", "r1").await;
    send_and_echo(&mut a, id, "two", "r2").await;
    a.send(
        &json!({"type": "message.send", "conversation_id": id, "body": "three",
                   "client_id": "r3"})
        .to_string(),
    )
    .await;
    let refused = expect(&mut a, "error").await;
    assert_eq!(refused["code"], "rate_limited");
    assert_eq!(refused["client_id"], "r3");
    assert_eq!(cluster.stored_messages(id).await, 2);
}

/// Sends a message and reads its `message.sent` and then its `message`.
async fn send_and_echo(client: &mut WsClient, conversation: u64, body: &str, id: &str) -> Value {
    let message = send(client, conversation, body, id).await;
    assert_eq!(expect(client, "message").await["message"], message);
    message
}

#[actix_web::test]
async fn members_who_are_offline_are_notified_once_per_conversation() {
    let cluster = Cluster::start().await;
    let g = cluster.gateway().await;
    let (alice, bob, dave, erin) = (
        unique("alice"),
        unique("bob"),
        unique("dave"),
        unique("erin"),
    );
    let (_, group) = cluster
        .open(&alice, json!({"type": "group", "members": [bob, dave]}))
        .await;
    let id = group["id"].as_u64().unwrap();
    let with_erin = cluster.direct(&alice, &erin).await;
    let (mut a, _) = g.connect(&alice).await;
    let (_b, _) = g.connect(&bob).await;
    // Bob is online once his session is recorded in Redis.
    eventually(
        "bob's session recorded",
        Duration::from_secs(10),
        || async {
            let (_, presence) = cluster
                .as_server("GET", &format!("/v1/users/{bob}/presence"), None)
                .await;
            presence["online"] == true
        },
    )
    .await;

    let first = send_and_echo(&mut a, id, "first news", "o1").await;
    send_and_echo(&mut a, id, "second news", "o2").await;
    // Notices are handled in order: once erin's (sent last) is there, both
    // messages to the group have been handled.
    send_and_echo(&mut a, with_erin, "hi erin", "o3").await;
    let notices = |user: String| {
        let cluster = &cluster;
        async move {
            let (status, feed) = cluster.as_user(&user, "GET", "/api/notifications").await;
            assert_eq!(status, 200, "{feed}");
            feed["notifications"].as_array().unwrap().clone()
        }
    };
    eventually("erin's notice", Duration::from_secs(10), || async {
        notices(erin.clone()).await.len() == 1
    })
    .await;
    let daves = notices(dave.clone()).await;
    assert_eq!(daves.len(), 1, "{daves:?}");
    let notice = &daves[0];
    assert_eq!(notice["type"], "chat.message");
    assert_eq!(notice["title"], format!("New message from {alice}"));
    // The notice does not quote the message, which may be deleted later.
    assert!(!notice["message"].as_str().unwrap().contains("news"));
    assert_eq!(notice["metadata"]["conversation_id"], id);
    assert_eq!(notice["metadata"]["message_id"], first["id"]);
    assert_eq!(notice["metadata"]["sender_id"], alice.as_str());
    // Neither the connected member nor the sender is notified.
    assert!(notices(bob.clone()).await.is_empty());
    assert!(notices(alice.clone()).await.is_empty());
    // The notice went through the outbox, which is empty once published.
    eventually("outbox emptied", Duration::from_secs(10), || async {
        cluster
            .db
            .count("SELECT COUNT(*) AS n FROM unpublished_batches")
            .await
            == 0
    })
    .await;
}

#[actix_web::test]
async fn senders_edit_and_delete_their_own_messages_and_every_member_hears_it() {
    let cluster = Cluster::start().await;
    let (g1, g2) = (cluster.gateway().await, cluster.gateway().await);
    let (alice, bob) = (unique("alice"), unique("bob"));
    let id = cluster.direct(&alice, &bob).await;
    let (mut a, _) = g1.connect(&alice).await;
    let (mut b, _) = g2.connect(&bob).await;
    let message = send_and_echo(&mut a, id, "helo", "e1").await;
    expect(&mut b, "message").await;
    let path = format!("/api/conversations/{id}/messages/{}", message["id"]);

    // Bob cannot touch alice's message; an outsider's conversation is 404.
    let (status, reply) = cluster
        .as_user_with(&bob, "PATCH", &path, Some(json!({"body": "hacked"})))
        .await;
    assert_eq!(
        (status, reply["error"]["code"].as_str()),
        (404, Some("message_not_found"))
    );
    let (status, reply) = cluster.as_user(&bob, "DELETE", &path).await;
    assert_eq!(
        (status, reply["error"]["code"].as_str()),
        (404, Some("message_not_found"))
    );
    let (status, reply) = cluster
        .as_user_with(&unique("eve"), "PATCH", &path, Some(json!({"body": "x"})))
        .await;
    assert_eq!(
        (status, reply["error"]["code"].as_str()),
        (404, Some("conversation_not_found"))
    );
    let (status, reply) = cluster
        .as_user_with(&alice, "PATCH", &path, Some(json!({"body": " "})))
        .await;
    assert_eq!(
        (status, reply["error"]["code"].as_str()),
        (400, Some("empty_message"))
    );

    let (status, reply) = cluster
        .as_user_with(&alice, "PATCH", &path, Some(json!({"body": "hello"})))
        .await;
    assert_eq!(status, 200, "{reply}");
    let edited = reply["message"].clone();
    assert_eq!(
        (edited["id"].clone(), edited["body"].as_str()),
        (message["id"].clone(), Some("hello"))
    );
    assert!(edited["edited_at"].is_string());
    for client in [&mut a, &mut b] {
        assert_eq!(expect(client, "message.updated").await["message"], edited);
    }

    let (status, _) = cluster.as_user(&alice, "DELETE", &path).await;
    assert_eq!(status, 204);
    for client in [&mut a, &mut b] {
        let deleted = expect(client, "message.deleted").await["message"].clone();
        assert_eq!(
            (deleted["id"].clone(), deleted["body"].as_str()),
            (message["id"].clone(), Some(""))
        );
        assert!(deleted["deleted_at"].is_string());
    }
    // Gone from the unread count, kept in its place in the history.
    let (_, conversation) = cluster.conversation(&bob, id).await;
    assert_eq!(conversation["unread_count"], 0);
    let (_, history) = cluster
        .as_user(&bob, "GET", &format!("/api/conversations/{id}/messages"))
        .await;
    assert_eq!(history["messages"][0]["body"], "");
    let (status, _) = cluster
        .as_user_with(&alice, "PATCH", &path, Some(json!({"body": "again"})))
        .await;
    assert_eq!(status, 404);
}

#[actix_web::test]
async fn a_burst_of_messages_is_stored_once_each_whatever_the_batches() {
    let cluster = Cluster::start().await;
    let (g1, g2) = (cluster.gateway().await, cluster.gateway().await);
    let (alice, bob) = (unique("alice"), unique("bob"));
    let id = cluster.direct(&alice, &bob).await;
    let (mut a1, _) = g1.connect(&alice).await;
    let (mut a2, _) = g1.connect(&alice).await;
    let (mut b, _) = g2.connect(&bob).await;
    // Frames sent back to back, from two connections on one node, so the
    // node's writer takes several at once; "dup" is sent twice.
    for i in 0..10 {
        for (client, device) in [(&mut a1, "a1"), (&mut a2, "a2")] {
            let client_id = if i == 9 {
                "dup".to_owned()
            } else {
                format!("{device}-{i}")
            };
            client
                .send(
                    &json!({"type": "message.send", "conversation_id": id,
                              "body": format!("{device} {i}"), "client_id": client_id})
                    .to_string(),
                )
                .await;
        }
    }
    let mut sent = Vec::new();
    for client in [&mut a1, &mut a2] {
        while sent.len() < 20 {
            let frame = frame(client).await;
            match frame["type"].as_str() {
                Some("message.sent") => {
                    sent.push(frame["message"]["id"].as_u64().unwrap());
                    if sent.len() == 10 || sent.len() == 20 {
                        break;
                    }
                }
                Some("message") => {}
                _ => panic!("{frame}"),
            }
        }
    }
    sent.sort_unstable();
    let distinct: std::collections::BTreeSet<u64> = sent.iter().copied().collect();
    // 19 messages: the second "dup" got the first one's id back.
    assert_eq!(distinct.len(), 19, "{sent:?}");
    assert_eq!(cluster.stored_messages(id).await, 19);
    // Bob receives each stored message once.
    let mut received = Vec::new();
    while received.len() < 19 {
        received.push(
            expect(&mut b, "message").await["message"]["id"]
                .as_u64()
                .unwrap(),
        );
    }
    assert_eq!(
        received
            .iter()
            .copied()
            .collect::<std::collections::BTreeSet<u64>>(),
        distinct
    );
    let sentinel = cluster.chat_sentinel(&bob).await;
    nothing_before(&mut b, &sentinel).await;
    let (_, conversation) = cluster.conversation(&bob, id).await;
    assert_eq!(
        conversation["last_message"]["id"].as_u64(),
        distinct.last().copied()
    );
    assert_eq!(conversation["unread_count"], 19);
}
