//! The connection log, live sessions and user presence, with two gateway
//! nodes (one of them a process killed with SIGKILL), the api, real MySQL
//! and Redis and real WebSocket clients.

use std::time::Duration;

use notify_testkit::outage::{mysql_addr, mysql_url_via, Outage};
use notify_testkit::ws::WsClient;
use notify_testkit::{eventually, token, unique};
use serde_json::{json, Value};

use crate::faults::GatewayProcess;
use crate::helpers::*;

/// The connection log row of `session`, as JSON, once it exists.
async fn row(cluster: &Cluster, session: &str) -> Value {
    let query = format!(
        "SELECT JSON_OBJECT('user_id', user_id, 'node', node, 'client_address', client_address, \
         'user_agent', user_agent, 'connected', connected_at IS NOT NULL, \
         'disconnected', disconnected_at IS NOT NULL, 'close_code', close_code, \
         'close_reason', close_reason, 'refused', refused, 'frames_in', frames_in, \
         'frames_out', frames_out, 'bytes_out', bytes_out) \
         FROM connection_logs WHERE session_id = '{session}'"
    );
    cluster.db.json(&query).await.unwrap_or(Value::Null)
}

async fn row_when(cluster: &Cluster, session: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..200 {
        last = row(cluster, session).await;
        if done(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("row of {session} never matched: {last}");
}

fn session_of(welcome: &Value) -> String {
    welcome["session_id"].as_str().unwrap().to_owned()
}

#[actix_web::test]
async fn a_connection_and_its_end_make_one_complete_log_row() {
    let cluster = Cluster::start().await;
    let g = cluster.gateway().await;
    let alice = unique("alice");
    let url = format!("{}/ws?token={}", g.base, token(&alice));
    let mut client = WsClient::connect(&url, &[("user-agent", "test-agent/1.0")])
        .await
        .unwrap();
    let welcome = client.text().await;
    let session = session_of(&welcome);
    let open = row_when(&cluster, &session, |r| !r.is_null()).await;
    assert_eq!(open["user_id"], alice.as_str());
    assert_eq!(open["client_address"], "127.0.0.1");
    assert_eq!(open["user_agent"], "test-agent/1.0");
    assert_eq!(open["disconnected"], false);
    assert_eq!(open["refused"], Value::Null);

    client.send(r#"{"type":"ping"}"#).await;
    assert_eq!(client.text().await["type"], "pong");
    client
        .send_message(awc::ws::Message::Close(Some(
            awc::ws::CloseCode::Normal.into(),
        )))
        .await;
    let closed = row_when(&cluster, &session, |r| r["disconnected"] == true).await;
    assert_eq!(closed["close_code"], 1000);
    assert_eq!(closed["frames_in"], 2, "{closed}");
    assert!(closed["frames_out"].as_u64().unwrap() >= 2, "{closed}");
    assert!(closed["bytes_out"].as_u64().unwrap() > 50, "{closed}");
    assert_eq!(closed["user_agent"], "test-agent/1.0");
    assert_eq!(
        g.metric("notify_gateway_connection_log_dropped_total")
            .await,
        0
    );
}

#[actix_web::test]
async fn refused_attempts_are_logged_with_their_reason_and_no_token() {
    let cluster = Cluster::start().await;
    let g = cluster.gateway().await;
    let bad = "not-a-token";
    let refused = WsClient::connect(&format!("{}/ws?token={bad}", g.base), &[]).await;
    assert_eq!(refused.err(), Some(401));
    // First-frame authentication with a token that does not verify.
    let mut late = WsClient::connect(&format!("{}/ws", g.base), &[])
        .await
        .unwrap();
    late.send(&json!({"type": "auth", "token": bad}).to_string())
        .await;
    assert_eq!(late.closed().await.0, Some(1008));
    let query = "SELECT JSON_ARRAYAGG(JSON_OBJECT('refused', refused, 'user', user_id, \
                 'code', close_code, 'closed', disconnected_at IS NOT NULL, 'reason', close_reason)) \
                 FROM connection_logs";
    eventually("both refusals logged", Duration::from_secs(5), || async {
        cluster
            .db
            .json(query)
            .await
            .and_then(|v| v.as_array().map(Vec::len))
            == Some(2)
    })
    .await;
    let mut rows = cluster
        .db
        .json(query)
        .await
        .unwrap()
        .as_array()
        .unwrap()
        .clone();
    rows.sort_by_key(|r| r["code"].as_u64());
    assert_eq!(rows[0]["refused"], "invalid_token");
    assert_eq!(rows[0]["code"], Value::Null);
    assert_eq!(rows[1]["refused"], "invalid_token");
    assert_eq!(rows[1]["code"], 1008);
    for row in &rows {
        assert_eq!(row["user"], Value::Null);
        assert_eq!(row["closed"], true);
        assert!(!row.to_string().contains(bad));
    }
}

#[actix_web::test]
async fn users_list_and_sign_out_their_sessions_on_any_node() {
    let cluster = Cluster::start().await;
    let (g1, g2) = (cluster.gateway().await, cluster.gateway().await);
    let (alice, bob) = (unique("alice"), unique("bob"));
    let (mut a1, w1) = g1.connect(&alice).await;
    let (mut a2, w2) = g2.connect(&alice).await;
    let (mut a3, w3) = g2.connect(&alice).await;
    let (_b, wb) = g1.connect(&bob).await;
    let (s1, s2, s3) = (session_of(&w1), session_of(&w2), session_of(&w3));

    let path = format!("/api/sessions?session_id={s1}");
    eventually("three sessions listed", Duration::from_secs(5), || async {
        cluster.as_user(&alice, "GET", &path).await.1["sessions"]
            .as_array()
            .is_some_and(|s| s.len() == 3)
    })
    .await;
    let (status, listed) = cluster.as_user(&alice, "GET", &path).await;
    assert_eq!(status, 200);
    let sessions = listed["sessions"].as_array().unwrap();
    let first = sessions
        .iter()
        .find(|s| s["session_id"] == s1.as_str())
        .unwrap();
    assert_eq!(first["current"], true);
    assert_eq!(first["client_address"], "127.0.0.1");
    assert!(first["connected_at"].as_str().unwrap().ends_with('Z'));
    let node_of =
        |id: &str| sessions.iter().find(|s| s["session_id"] == id).unwrap()["node"].clone();
    assert_eq!(node_of(&s1), w1["node"]);
    assert_eq!(node_of(&s2), w2["node"]);
    assert_ne!(node_of(&s1), node_of(&s2));
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);

    // Another user's session, or none at all, is not found.
    let (status, _) = cluster
        .as_user(&bob, "DELETE", &format!("/api/sessions/{s2}"))
        .await;
    assert_eq!(status, 404);
    let (status, _) = cluster
        .as_user(
            &alice,
            "DELETE",
            &format!("/api/sessions/{}", session_of(&wb)),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = cluster
        .as_user(&alice, "DELETE", "/api/sessions/nope")
        .await;
    assert_eq!(status, 404);

    // Alice signs out her second session, on g2: only it closes.
    let (status, _) = cluster
        .as_user(&alice, "DELETE", &format!("/api/sessions/{s2}"))
        .await;
    assert_eq!(status, 204);
    assert_eq!(
        a2.closed().await,
        (Some(1008), "session revoked".to_owned())
    );
    let ids = cluster.notify(&[&alice], "still here").await;
    assert_eq!(a1.notification_id().await, ids[0]);
    assert_eq!(a3.notification_id().await, ids[0]);

    // Then every session but the first.
    let (status, reply) = cluster
        .as_user(&alice, "DELETE", &format!("/api/sessions?except={s1}"))
        .await;
    assert_eq!((status, reply["closed"].as_u64()), (200, Some(1)));
    assert_eq!(a3.closed().await.0, Some(1008));
    let closed = row_when(&cluster, &s3, |r| r["disconnected"] == true).await;
    assert_eq!(
        (
            closed["close_code"].as_u64(),
            closed["close_reason"].as_str()
        ),
        (Some(1008), Some("session revoked"))
    );
    eventually("one session left", Duration::from_secs(5), || async {
        let listed = cluster.as_user(&alice, "GET", "/api/sessions").await.1;
        listed["sessions"].as_array().is_some_and(|s| s.len() == 1)
            && listed["sessions"][0]["session_id"] == s1.as_str()
            && listed["sessions"][0]["current"] == false
    })
    .await;
    let ids = cluster.notify(&[&alice], "first only").await;
    assert_eq!(a1.notification_id().await, ids[0]);
}

#[actix_web::test]
async fn servers_ask_who_is_online_for_a_thousand_users_at_once() {
    let cluster = Cluster::start().await;
    let (g1, g2) = (cluster.gateway().await, cluster.gateway().await);
    let (alice, bob, carol) = (unique("alice"), unique("bob"), unique("carol"));
    let _a1 = g1.connect(&alice).await;
    let _a2 = g2.connect(&alice).await;
    let (mut b, _) = g2.connect(&bob).await;
    let mut users: Vec<String> = (0..997)
        .map(|i| format!("{}-{i}", unique("away")))
        .collect();
    users.extend([alice.clone(), bob.clone(), carol.clone()]);
    eventually("alice and bob online", Duration::from_secs(5), || async {
        let (_, reply) = cluster
            .as_server("POST", "/v1/presence", Some(json!({"users": users})))
            .await;
        reply["users"][&alice]["connections"] == 2 && reply["users"][&bob]["online"] == true
    })
    .await;
    let (status, reply) = cluster
        .as_server("POST", "/v1/presence", Some(json!({"users": users})))
        .await;
    assert_eq!(status, 200);
    let map = reply["users"].as_object().unwrap();
    assert_eq!(map.len(), 1000);
    assert_eq!(map.values().filter(|p| p["online"] == true).count(), 2);
    assert_eq!(
        reply["users"][&carol],
        json!({"online": false, "connections": 0, "last_seen_at": null})
    );
    assert!(reply["users"][&alice]["last_seen_at"].is_string());

    // Bob leaves: offline, seen when his connection ended.
    b.send_message(awc::ws::Message::Close(None)).await;
    eventually("bob offline", Duration::from_secs(5), || async {
        let (_, bob_now) = cluster
            .as_server("GET", &format!("/v1/users/{bob}/presence"), None)
            .await;
        bob_now["online"] == false && bob_now["last_seen_at"].is_string()
    })
    .await;
    let too_many: Vec<String> = (0..1001).map(|i| format!("u{i}")).collect();
    let (status, reply) = cluster
        .as_server("POST", "/v1/presence", Some(json!({"users": too_many})))
        .await;
    assert_eq!(
        (status, reply["error"]["code"].as_str()),
        (400, Some("too_many_recipients"))
    );
    let (status, _) = cluster
        .as_server("POST", "/v1/presence", Some(json!({"users": []})))
        .await;
    assert_eq!(status, 400);
}

#[actix_web::test]
async fn a_killed_gateway_leaves_no_session_open() {
    let cluster = Cluster::start().await;
    let doomed = GatewayProcess::start_with(&cluster, &[("NODE_HEARTBEAT_MS", "1000")]).await;
    let alice = unique("alice");
    let (_client, welcome) = WsClient::connect_as(&doomed.base, &token(&alice)).await;
    let session = session_of(&welcome);
    row_when(&cluster, &session, |r| !r.is_null()).await;
    eventually("alice online", Duration::from_secs(5), || async {
        cluster
            .as_server("GET", &format!("/v1/users/{alice}/presence"), None)
            .await
            .1["online"]
            == true
    })
    .await;

    doomed.signal("-KILL");
    // Within two heartbeats (about 2 s) of the last one, plus the sweep.
    let closed = row_when(&cluster, &session, |r| r["disconnected"] == true).await;
    assert_eq!(closed["close_reason"], "node_lost");
    assert_eq!(closed["close_code"], Value::Null);
    let listed = cluster.as_user(&alice, "GET", "/api/sessions").await.1;
    assert_eq!(listed["sessions"], json!([]));
    let presence = cluster
        .as_server("GET", &format!("/v1/users/{alice}/presence"), None)
        .await
        .1;
    assert_eq!(presence["online"], false);
    assert!(presence["last_seen_at"].is_string());
}

#[actix_web::test]
async fn a_mysql_outage_drops_log_rows_but_not_notifications() {
    let outage = Outage::start(mysql_addr()).await;
    let cluster = Cluster::start().await;
    let port = outage.port;
    let g = cluster
        .gateway_with(|c| c.database_url = mysql_url_via(&c.database_url, port))
        .await;
    let alice = unique("alice");
    outage.set_up(false);
    let (mut a, welcome) = g.connect(&alice).await;
    assert_eq!(welcome["unread_count"], Value::Null);
    let ids = cluster.notify(&[&alice], "delivered anyway").await;
    assert_eq!(a.notification_id().await, ids[0]);
    eventually(
        "the connect row is counted as dropped",
        Duration::from_secs(20),
        || async {
            g.metric("notify_gateway_connection_log_dropped_total")
                .await
                >= 1
        },
    )
    .await;
    outage.set_up(true);
    // Back: the end of the connection is written, a whole row.
    a.send_message(awc::ws::Message::Close(None)).await;
    let session = session_of(&welcome);
    let row = row_when(&cluster, &session, |r| r["disconnected"] == true).await;
    assert_eq!(row["user_id"], alice.as_str());
}
