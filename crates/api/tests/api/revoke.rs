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
    let reply = app
        .request(
            "POST",
            "/v1/users/ann/disconnect",
            &[("x-api-key", API_KEY)],
            None,
        )
        .await;
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
