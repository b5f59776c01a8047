//! What a gateway logs never includes a token or the JWT secret, even at
//! debug level, even for tokens sent in the query string or refused.

use notify_testkit::process::{assert_not_logged, free_port, LoggedProcess};
use notify_testkit::ws::WsClient;
use notify_testkit::{eventually, token, JWT_SECRET};
use serde_json::json;

use crate::helpers::*;

#[actix_web::test]
async fn tokens_never_reach_the_log() {
    let cluster = Cluster::start().await;
    let port = free_port();
    let mut gateway = LoggedProcess::spawn(
        env!("CARGO_BIN_EXE_notify-gateway"),
        &[
            ("GATEWAY_ADDR", &format!("127.0.0.1:{port}")),
            ("DATABASE_URL", &cluster.db.url),
            ("REDIS_URL", &cluster.redis_url),
            ("JWT_SECRET", JWT_SECRET),
            ("CHANNEL_PREFIX", &cluster.prefix),
            ("GATEWAY_WORKERS", "1"),
            ("RUST_LOG", "debug"),
        ],
    );
    eventually(
        "gateway ready",
        std::time::Duration::from_secs(30),
        || async { get(&format!("http://127.0.0.1:{port}/ready")).await.0 == 200 },
    )
    .await;
    let base = format!("ws://127.0.0.1:{port}");
    let (in_query, in_header, in_frame, refreshed) =
        (token("ann"), token("ann"), token("ann"), token("ann"));
    let forged = format!("{}x", token("ann"));

    let mut by_query = WsClient::connect(&format!("{base}/ws?token={in_query}"), &[])
        .await
        .unwrap();
    assert_eq!(by_query.text().await["type"], "welcome");
    let (mut by_header, _) = WsClient::connect_as(&base, &in_header).await;
    let mut by_frame = WsClient::connect(&format!("{base}/ws"), &[]).await.unwrap();
    by_frame
        .send(&json!({"type": "auth", "token": in_frame}).to_string())
        .await;
    assert_eq!(by_frame.text().await["type"], "welcome");
    by_header
        .send(&json!({"type": "refresh", "token": refreshed}).to_string())
        .await;
    assert_eq!(by_header.text().await["type"], "refreshed");
    let refused = WsClient::connect(&format!("{base}/ws?token={forged}"), &[]).await;
    assert_eq!(refused.err(), Some(401));
    by_frame
        .send(&json!({"type": "refresh", "token": forged}).to_string())
        .await;
    assert_eq!(by_frame.text().await["type"], "error");
    let ids = cluster.notify(&["ann"], "logged?").await;
    assert_eq!(by_query.notification_id().await, ids[0]);

    let log = gateway.stop().await;
    assert!(
        log.contains("gateway listening"),
        "nothing was captured: {log}"
    );
    let mut secrets = vec![("JWT secret", JWT_SECRET)];
    for token in [&in_query, &in_header, &in_frame, &refreshed, &forged] {
        secrets.push(("token", token.as_str()));
        secrets.push(("token signature", token.rsplit('.').next().unwrap()));
    }
    assert_not_logged(&log, &secrets);
}
