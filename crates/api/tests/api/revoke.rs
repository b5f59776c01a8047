//! Revoked tokens and disconnected users on the feed endpoints.

use awc::http::StatusCode;
use notify_testkit::{token_with, unique};

use crate::helpers::*;

impl TestApp {
    async fn feed_with(&self, token: &str) -> Reply {
        let auth = format!("Bearer {token}");
        self.request(
            "GET",
            "/api/notifications",
            &[("authorization", &auth)],
            None,
        )
        .await
    }
}

#[actix_web::test]
async fn a_disconnected_user_s_earlier_tokens_are_refused() {
    let app = TestApp::spawn().await;
    let old = token_with("ann", &unique("jti"), now_secs() - 5);
    assert_eq!(app.feed_with(&old).await.status, StatusCode::OK);
    let reply = disconnect(&app, "ann").await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.body["user_id"], "ann");
    let refused = app.feed_with(&old).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused.code(), "token_revoked");
    // Other users, and ann's tokens issued afterwards, still work.
    assert_eq!(
        app.as_user("bob", "GET", "/api/notifications").await.status,
        StatusCode::OK
    );
    let fresh = token_with("ann", &unique("jti"), now_secs() + 1);
    assert_eq!(app.feed_with(&fresh).await.status, StatusCode::OK);
}

#[actix_web::test]
async fn a_revoked_jti_is_refused_and_nothing_else() {
    let app = TestApp::spawn().await;
    let (revoked, kept) = (unique("jti"), unique("jti"));
    let revoked_token = token_with("ann", &revoked, now_secs());
    let kept_token = token_with("ann", &kept, now_secs());
    let body = serde_json::json!({"jti": revoked}).to_string();
    let reply = app.send("/v1/tokens/revoke", &body).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(app.feed_with(&revoked_token).await.code(), "token_revoked");
    assert_eq!(app.feed_with(&kept_token).await.status, StatusCode::OK);
    for bad in ["", "{", r#"{"jti":5}"#] {
        let reply = app.send("/v1/tokens/revoke", bad).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}");
    }
}

/// Milliseconds before `key` expires, as Redis counts them.
async fn pttl(key: &str) -> i64 {
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("PTTL")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap()
}

#[actix_web::test]
async fn revocations_are_kept_while_the_tokens_they_refuse_are_accepted() {
    let (max_lifetime, leeway) = (3600, 30);
    let app = TestApp::spawn_with(|c| {
        c.jwt.max_lifetime = std::time::Duration::from_secs(max_lifetime);
        c.jwt.leeway = std::time::Duration::from_secs(leeway);
    })
    .await;
    // The longest-lived token accepted now expires max_lifetime + leeway
    // from now and is accepted until leeway after that.
    let accepted_ms = ((max_lifetime + 2 * leeway) * 1000) as i64;
    let reply = disconnect(&app, "ann").await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let kept_ms =
        pttl(&notify_protocol::ChannelNames::new(app.prefix.clone()).revoked_user("ann")).await;
    assert!(kept_ms > accepted_ms, "{kept_ms} <= {accepted_ms}");

    let jti = unique("jti");
    let reply = app
        .send(
            "/v1/tokens/revoke",
            &serde_json::json!({"jti": jti}).to_string(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let kept_ms =
        pttl(&notify_protocol::ChannelNames::new(app.prefix.clone()).revoked_token(&jti)).await;
    assert!(kept_ms > accepted_ms, "{kept_ms} <= {accepted_ms}");

    let exp = now_secs() + 600;
    let reply = app
        .send(
            "/v1/tokens/revoke",
            &serde_json::json!({"jti": jti, "exp": exp}).to_string(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let kept_ms =
        pttl(&notify_protocol::ChannelNames::new(app.prefix.clone()).revoked_token(&jti)).await;
    let until_ms = ((exp + leeway - now_secs()) * 1000) as i64;
    assert!(kept_ms > until_ms, "{kept_ms} <= {until_ms}");
}

/// `POST /v1/users/{user}/disconnect` with the test API key.
async fn disconnect(app: &TestApp, user: &str) -> Reply {
    let path = format!("/v1/users/{user}/disconnect");
    app.request("POST", &path, &[("x-api-key", API_KEY)], None)
        .await
}
