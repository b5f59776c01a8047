//! Behaviour when MySQL or Redis is away.

use awc::http::StatusCode;
use notify_testkit::outage::{mysql_addr, mysql_url_via, Outage};

use crate::helpers::*;

#[actix_web::test]
async fn mysql_down_is_503_with_retry_after_and_writes_nothing() {
    let outage = Outage::start(mysql_addr()).await;
    let port = outage.port;
    let app = TestApp::spawn_with(|config| {
        config.database_url = mysql_url_via(&config.database_url, port);
    })
    .await;
    app.notify(&["alice"], "before").await;

    outage.set_up(false);
    let body = r#"{"recipients":["alice","bob"],"title":"t","message":"m"}"#;
    for path in ["/v1/notifications", "/webhook/notify"] {
        let body = if path == "/webhook/notify" {
            r#"{"recipientId":"alice","message":"m"}"#
        } else {
            body
        };
        let reply = app.send(path, body).await;
        assert_eq!(
            reply.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{path}: {}",
            reply.body
        );
        assert_eq!(reply.code(), "service_unavailable");
        assert!(reply.headers.get("retry-after").is_some());
    }
    let feed = app.as_user("alice", "GET", "/api/notifications").await;
    assert_eq!(feed.status, StatusCode::SERVICE_UNAVAILABLE);
    let ready = app.request("GET", "/ready", &[], None).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.body["mysql"], "down");
    assert_eq!(ready.body["redis"], "up");
    assert_eq!(app.rows().await, 1);

    // Back without restarting anything.
    outage.set_up(true);
    app.notify(&["alice"], "after").await;
    assert_eq!(app.rows().await, 2);
    let ready = app.request("GET", "/ready", &[], None).await;
    assert_eq!(ready.status, StatusCode::OK);
}

#[actix_web::test]
async fn redis_down_still_stores_and_ready_says_so() {
    // Nothing listens on port 1.
    let app = TestApp::spawn_with(|config| config.redis_url = "redis://127.0.0.1:1".into()).await;
    let ids = app.notify(&["alice", "bob"], "stored anyway").await;
    assert_eq!(ids.len(), 2);
    assert_eq!(app.rows().await, 2);
    let feed = app.as_user("alice", "GET", "/api/notifications").await;
    assert_eq!(feed.body["notifications"][0]["id"], ids[0]);

    let ready = app.request("GET", "/ready", &[], None).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        ready.body,
        serde_json::json!({"status": "unavailable", "mysql": "up", "redis": "down"})
    );
    let health = app.request("GET", "/health", &[], None).await;
    assert_eq!(health.status, StatusCode::OK);
}

#[actix_web::test]
async fn ready_when_both_are_up() {
    let app = TestApp::spawn().await;
    let ready = app.request("GET", "/ready", &[], None).await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(
        ready.body,
        serde_json::json!({"status": "ready", "mysql": "up", "redis": "up"})
    );
}

#[actix_web::test]
async fn events_with_redis_down_are_503_and_retain_nothing() {
    // Nothing listens on port 1.
    let app = TestApp::spawn_with(|config| config.redis_url = "redis://127.0.0.1:1".into()).await;
    let reply = app
        .send(
            "/v1/events",
            r#"{"event":"service:status","topic":"status","retain":true,"data":{}}"#,
        )
        .await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.code(), "service_unavailable");
    assert!(reply.headers.contains_key("retry-after"));
    let reply = app
        .request(
            "DELETE",
            "/v1/topics/status/snapshot",
            &[("x-api-key", crate::helpers::API_KEY)],
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
}
