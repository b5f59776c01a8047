use awc::http::StatusCode;
use notify_api::limits::Rate;

use crate::helpers::*;

const BODY: &str = r#"{"recipients":["alice"],"title":"t","message":"m"}"#;

#[actix_web::test]
async fn an_api_key_over_its_rate_gets_429_and_stores_nothing() {
    let app = TestApp::spawn_with(|c| {
        c.per_key = Rate {
            per_second: 1,
            burst: 2,
        }
    })
    .await;
    for _ in 0..2 {
        assert_eq!(
            app.send("/v1/notifications", BODY).await.status,
            StatusCode::ACCEPTED
        );
    }
    for path in ["/v1/notifications", "/webhook/notify"] {
        let body = if path == "/webhook/notify" {
            r#"{"recipientId":"alice","message":"m"}"#
        } else {
            BODY
        };
        let refused = app.send(path, body).await;
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS, "{path}");
        assert_eq!(refused.code(), "rate_limited");
        let retry: u64 = refused
            .headers
            .get("retry-after")
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=2).contains(&retry), "{retry}");
    }
    assert_eq!(app.rows().await, 2);
    // Another sender is not affected.
    let other = app
        .request(
            "POST",
            "/v1/notifications",
            &[("x-api-key", SECOND_API_KEY)],
            Some(BODY),
        )
        .await;
    assert_eq!(other.status, StatusCode::ACCEPTED);
    assert_eq!(app.rows().await, 3);
}

#[actix_web::test]
async fn a_user_over_their_rate_gets_429() {
    let app = TestApp::spawn_with(|c| {
        c.per_user = Rate {
            per_second: 1,
            burst: 2,
        }
    })
    .await;
    app.notify(&["alice"], "x").await;
    for _ in 0..2 {
        let ok = app.as_user("alice", "GET", "/api/notifications").await;
        assert_eq!(ok.status, StatusCode::OK);
    }
    let refused = app
        .as_user("alice", "PUT", "/api/notifications/read-all")
        .await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.code(), "rate_limited");
    assert!(refused.headers.contains_key("retry-after"));
    assert_eq!(
        app.count("SELECT COUNT(*) AS n FROM notifications WHERE read_at IS NULL")
            .await,
        1,
        "the refused read-all changed rows"
    );
    let bob = app.as_user("bob", "GET", "/api/notifications").await;
    assert_eq!(bob.status, StatusCode::OK);
}

#[actix_web::test]
async fn responses_carry_security_headers() {
    let app = TestApp::spawn().await;
    let ok = app.request("GET", "/health", &[], None).await;
    let refused = app.send("/v1/notifications", "{").await;
    let missing = app.request("GET", "/nope", &[], None).await;
    for reply in [ok, refused, missing] {
        assert_eq!(
            reply.headers.get("x-content-type-options").unwrap(),
            "nosniff"
        );
        assert_eq!(reply.headers.get("x-frame-options").unwrap(), "DENY");
        assert_eq!(reply.headers.get("cache-control").unwrap(), "no-store");
        assert!(reply.headers.contains_key("content-security-policy"));
        assert_eq!(reply.headers.get("referrer-policy").unwrap(), "no-referrer");
    }
}
