//! Socket.IO clients at `/socket.io/`, packet by packet (the real
//! `socket.io-client` is in clients/socketio): the handshake, events both
//! ways with acknowledgements, and every refusal.

use std::time::Duration;

use notify_auth::{jwt::sign_hs256, Claims};
use notify_protocol::socketio::NotificationEvent;
use notify_testkit::ws::{Received, WsClient};
use notify_testkit::{now_secs, token, unique, JWT_SECRET};
use serde_json::Value;

use crate::helpers::*;

const PATH: &str = "/socket.io/?EIO=4&transport=websocket";

/// An upgraded Socket.IO socket, past the open packet.
async fn open(g: &Gateway, query: &str) -> WsClient {
    let mut client = WsClient::connect(&format!("{}{PATH}{query}", g.base), &[])
        .await
        .unwrap_or_else(|status| panic!("refused with {status}"));
    let open = packet(&mut client).await;
    let handshake: Value =
        serde_json::from_str(open.strip_prefix('0').expect("an open packet")).unwrap();
    assert_eq!(handshake["sid"].as_str().map(str::len), Some(32), "{open}");
    assert_eq!(handshake["upgrades"], serde_json::json!([]));
    assert_eq!(handshake["pingInterval"], 25_000);
    // A heartbeat and the auth timeout: the first ping comes after CONNECT.
    assert_eq!(handshake["pingTimeout"], 26_000);
    assert_eq!(handshake["maxPayload"], 65_536);
    client
}

/// The next packet that is not the server's ping (answered, as a client
/// does: the first one comes right after CONNECT).
async fn packet(client: &mut WsClient) -> String {
    loop {
        let packet = client.packet().await;
        if packet != "2" {
            return packet;
        }
        client.send("3").await;
    }
}

/// The `[name, args...]` of an EVENT packet.
fn event(packet: &str) -> Vec<Value> {
    let array = packet
        .strip_prefix("42")
        .unwrap_or_else(|| panic!("not an EVENT: {packet}"));
    serde_json::from_str(array).unwrap()
}

#[actix_web::test]
async fn connect_receive_and_acknowledge() {
    let cluster = Cluster::start().await;
    let g = cluster.gateway().await;
    let mut client = open(&g, "").await;
    client
        .send(&format!(
            r#"40{{"token":"{}","app":"ignored"}}"#,
            token("alice")
        ))
        .await;
    let connected = packet(&mut client).await;
    let sid: Value = serde_json::from_str(connected.strip_prefix("40").expect("CONNECT")).unwrap();
    let welcome = event(&packet(&mut client).await);
    assert_eq!(welcome[0], "welcome");
    assert_eq!(welcome[1]["session_id"], sid["sid"]);
    assert_eq!(welcome[1]["unread_count"], 0);

    let id = cluster.notify(&["alice"], "hello").await[0];
    let notification = event(&packet(&mut client).await);
    assert_eq!(notification[0], "new_notification");
    assert_eq!(notification[1]["id"], id);
    assert_eq!(notification[1]["message"], "hello");

    client
        .send(&format!(r#"427["mark_notification_read",{id}]"#))
        .await;
    // The ACK, then the read event every connection of the user gets.
    assert_eq!(packet(&mut client).await, r#"437[{"success":true}]"#);
    assert_eq!(
        event(&packet(&mut client).await),
        vec![
            Value::from("notification_read"),
            serde_json::json!({ "ids": [id] })
        ]
    );
    client.send(r#"428["mark_notification_read","x"]"#).await;
    let refused: Vec<Value> =
        serde_json::from_str(packet(&mut client).await.strip_prefix("438").unwrap()).unwrap();
    assert_eq!(refused[0]["success"], false);
    assert_eq!(refused[0]["error"], "invalid_frame");
    client.send(r#"429["no_such_event"]"#).await;
    let refused: Vec<Value> =
        serde_json::from_str(packet(&mut client).await.strip_prefix("439").unwrap()).unwrap();
    assert_eq!(refused[0]["error"], "unknown_type");

    // Engine.IO: the client's own ping is answered; DISCONNECT ends it.
    client.send("2probe").await;
    assert_eq!(packet(&mut client).await, "3probe");
    client.send("41").await;
    assert!(matches!(
        client.next().await,
        Received::Close(..) | Received::Ended
    ));
}

#[actix_web::test]
async fn the_token_of_the_upgrade_and_a_resume_in_auth() {
    let cluster = Cluster::start().await;
    let g = cluster.gateway().await;
    // The client holds the first two. A native resume would also resend
    // the first (created within PUBLISH_LAG_SECS of the second, for ids
    // committed out of order); a Socket.IO app does not drop duplicates, so
    // only what lies above its id comes.
    let _first = cluster.notify(&["bob"], "zero").await;
    let ids = cluster.notify(&["bob"], "one").await;
    let more = cluster.notify(&["bob"], "two").await;
    let mut client = open(&g, &format!("&token={}", token("bob"))).await;
    client.send(&format!(r#"40{{"after":{}}}"#, ids[0])).await;
    assert!(packet(&mut client).await.starts_with("40{"));
    assert_eq!(event(&packet(&mut client).await)[0], "welcome");
    let missed = event(&packet(&mut client).await);
    assert_eq!(missed[0], "new_notification");
    assert_eq!(missed[1]["id"], more[0]);
    let resumed = event(&packet(&mut client).await);
    assert_eq!(resumed[0], "resumed");
    assert_eq!(resumed[1]["count"], 1);
    assert_eq!(resumed[1]["unread_count"], 3);
}

#[actix_web::test]
async fn refusals() {
    let cluster = Cluster::start().await;
    let g = cluster.gateway().await;
    // Before the upgrade: long-polling and other Engine.IO versions.
    for query in [
        "?EIO=4&transport=polling",
        "?EIO=3&transport=websocket",
        "?EIO=4&transport=websocket&sid=abc",
    ] {
        let status = WsClient::connect(&format!("{}/socket.io/{query}", g.base), &[])
            .await
            .err();
        assert_eq!(status, Some(400), "{query}");
    }

    // A bad token: CONNECT_ERROR with the native code, then a 1008 close.
    let mut client = open(&g, "").await;
    client.send(r#"40{"token":"nope"}"#).await;
    assert_eq!(
        packet(&mut client).await,
        r#"44{"message":"invalid_token"}"#
    );
    // Never connected: no DISCONNECT, only the close.
    assert!(
        matches!(client.next().await, Received::Close(Some(1008), reason) if reason == "invalid token")
    );

    // No token at all, and an event before CONNECT.
    let mut client = open(&g, "").await;
    client.send("40").await;
    assert_eq!(
        packet(&mut client).await,
        r#"44{"message":"auth_required"}"#
    );
    let mut client = open(&g, "").await;
    client.send(r#"42["mark_all_read"]"#).await;
    assert_eq!(
        packet(&mut client).await,
        r#"44{"message":"auth_required"}"#
    );

    // Another namespace is refused there; the main one still connects.
    let mut client = open(&g, "").await;
    client.send("40/admin,").await;
    assert_eq!(
        packet(&mut client).await,
        r#"44/admin,{"message":"invalid_namespace"}"#
    );
    client
        .send(&format!(r#"40{{"token":"{}"}}"#, token("carol")))
        .await;
    assert!(packet(&mut client).await.starts_with("40{"));
    assert_eq!(event(&packet(&mut client).await)[0], "welcome");

    // Binary events: refused, and counted like any invalid frame.
    client
        .send(r#"451-["upload",{"_placeholder":true,"num":0}]"#)
        .await;
    let error = event(&packet(&mut client).await);
    assert_eq!(error[0], "error");
    assert_eq!(error[1]["code"], "unsupported_frame");

    // A revoked session: DISCONNECT (the client does not reconnect by
    // itself), then the native close.
    let (status, _) = cluster.api_post("/v1/users/carol/disconnect", None).await;
    assert_eq!(status, 200);
    assert_eq!(packet(&mut client).await, "41");
    assert_eq!(client.closed().await, (Some(1008), "token revoked".into()));
}

/// A connection only the heartbeat keeps: pings from the server, the
/// client's pongs, on an interval shorter than the test.
#[actix_web::test]
async fn heartbeats_the_configured_event_name_and_connect_errors_after_auth() {
    let cluster = Cluster::start().await;
    let g = cluster
        .gateway_with(|c| {
            c.limits.heartbeat = Duration::from_secs(1);
            c.limits.max_connections_per_user = 1;
            c.socketio_event = NotificationEvent::NotificationNew;
        })
        .await;
    let mut client = WsClient::connect(&format!("{}{PATH}", g.base), &[])
        .await
        .unwrap();
    assert!(packet(&mut client).await.starts_with("0{"));
    client
        .send(&format!(r#"40{{"token":"{}"}}"#, token("dan")))
        .await;
    assert!(packet(&mut client).await.starts_with("40{"));
    assert_eq!(event(&packet(&mut client).await)[0], "welcome");
    // The first ping at once, then one a heartbeat; answered, the
    // connection outlives two heartbeats several times over.
    for _ in 0..4 {
        assert_eq!(client.packet().await, "2", "a ping");
        client.send("3").await;
    }
    let id = cluster.notify(&["dan"], "named").await[0];
    let named = loop {
        let packet = client.packet().await; // pings included
        if packet == "2" {
            client.send("3").await;
            continue;
        }
        break event(&packet);
    };
    assert_eq!(named[0], "notification:new");
    assert_eq!(named[1]["id"], id);

    // Over the per-user limit, refused after the token was accepted: still
    // a CONNECT_ERROR the app can read, and no DISCONNECT.
    let mut second = WsClient::connect(&format!("{}{PATH}", g.base), &[])
        .await
        .unwrap();
    packet(&mut second).await;
    second
        .send(&format!(r#"40{{"token":"{}"}}"#, token("dan")))
        .await;
    assert_eq!(
        packet(&mut second).await,
        r#"44{"message":"too_many_connections"}"#
    );
    assert!(matches!(
        second.next().await,
        Received::Close(Some(1008), _)
    ));
}

/// An expired token ends the transport without a DISCONNECT, so
/// `socket.io-client` reconnects and asks the app for a new token.
#[actix_web::test]
async fn an_expired_token_lets_the_client_reconnect() {
    let cluster = Cluster::start().await;
    let g = cluster.gateway().await;
    let claims = Claims {
        sub: "eve".into(),
        exp: now_secs() + 2,
        iat: Some(now_secs()),
        jti: Some(unique("jti")),
        roles: Vec::new(),
    };
    let short = sign_hs256(JWT_SECRET.as_bytes(), &claims).unwrap();
    let mut client = open(&g, "").await;
    client.send(&format!(r#"40{{"token":"{short}"}}"#)).await;
    assert!(packet(&mut client).await.starts_with("40{"));
    assert_eq!(event(&packet(&mut client).await)[0], "welcome");
    loop {
        match client.next_within(Duration::from_secs(10)).await {
            Some(Received::Text(ping)) if ping == 2 => client.send("3").await,
            Some(Received::Close(code, reason)) => {
                assert_eq!((code, reason.as_str()), (Some(1008), "token expired"));
                break;
            }
            other => panic!("expected pings then the close, got {other:?}"),
        }
    }
}
