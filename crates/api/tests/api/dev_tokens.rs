//! `POST /api/dev/token` (`DEV_TOKENS=true`): off by default, and when on,
//! its tokens are ordinary tokens of the asked user.

use std::process::Command;

use awc::http::StatusCode;

use crate::helpers::{TestApp, API_KEY};

async fn ask(app: &TestApp, body: &str) -> crate::helpers::Reply {
    app.request("POST", "/api/dev/token", &[], Some(body)).await
}

#[actix_web::test]
async fn off_by_default_the_path_does_not_exist() {
    let app = TestApp::spawn().await;
    let reply = ask(&app, r#"{"user_id":"alice"}"#).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.code(), "not_found");
}

#[actix_web::test]
async fn a_dev_token_signs_in_as_the_asked_user() {
    let app = TestApp::spawn_with(|c| c.dev_tokens = true).await;
    let before = notify_testkit::now_secs();
    let reply = ask(&app, r#"{"user_id":"alice","ttl_secs":60}"#).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.body["user_id"], "alice");
    let expires = reply.body["expires_at"].as_u64().unwrap();
    assert!((before + 60..=before + 61).contains(&expires), "{expires}");
    let token = reply.body["token"].as_str().unwrap();

    app.notify(&["alice"], "for alice").await;
    let auth = format!("Bearer {token}");
    let feed = app
        .request(
            "GET",
            "/api/notifications",
            &[("authorization", &auth)],
            None,
        )
        .await;
    assert_eq!(feed.status, StatusCode::OK);
    assert_eq!(feed.body["notifications"][0]["title"], "for alice");
    assert_eq!(feed.body["notifications"][0]["user_id"], "alice");

    // Without ttl_secs: an hour.
    let reply = ask(&app, r#"{"user_id":"bob"}"#).await;
    let expires = reply.body["expires_at"].as_u64().unwrap();
    assert!(expires >= before + 3600 && expires <= notify_testkit::now_secs() + 3600);
}

#[actix_web::test]
async fn bad_requests_are_refused_with_their_code() {
    let app = TestApp::spawn_with(|c| c.dev_tokens = true).await;
    for (body, code) in [
        (r#"{"user_id":""}"#, "invalid_field"),
        (r#"{"user_id":" alice"}"#, "invalid_field"),
        (r#"{"user_id":"alice","ttl_secs":1}"#, "invalid_field"),
        (r#"{"user_id":"alice","ttl_secs":86401}"#, "invalid_field"),
        (r#"{"user_id":"alice","roles":["admin"]}"#, "invalid_body"),
        (r#"{"user":"alice"}"#, "invalid_body"),
        ("{", "malformed_json"),
    ] {
        let reply = ask(&app, body).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(reply.code(), code, "{body}: {:?}", reply.body);
    }
}

#[test]
fn dev_tokens_without_a_jwt_secret_stop_the_process() {
    let output = Command::new(env!("CARGO_BIN_EXE_notify-api"))
        .env_clear()
        .env("DATABASE_URL", "mysql://root@127.0.0.1:1/x")
        .env("JWT_JWKS", "/nonexistent/jwks.json")
        .env("JWT_ACCEPT_ANY_AUDIENCE", "true")
        .env("WEBHOOK_API_KEYS", API_KEY)
        .env("DEV_TOKENS", "true")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("DEV_TOKENS=true needs JWT_SECRET"),
        "{stderr}"
    );
}
