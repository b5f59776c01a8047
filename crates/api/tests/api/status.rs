//! `GET /v1/notifications/{id}`: a sender reads what became of its own
//! notifications and of nobody else's.

use awc::http::StatusCode;
use notify_auth::webhook::sign;

use crate::helpers::*;

impl TestApp {
    async fn status(&self, key: &str, id: u64) -> Reply {
        self.request(
            "GET",
            &format!("/v1/notifications/{id}"),
            &[("x-api-key", key)],
            None,
        )
        .await
    }
}

#[actix_web::test]
async fn only_the_sender_reads_a_notification_s_delivery_state() {
    let app = TestApp::spawn().await;
    let ids = app.notify(&["alice"], "t").await;

    let own = app.status(API_KEY, ids[0]).await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.body);
    assert_eq!(own.body["id"], ids[0]);
    assert_eq!(own.body["user_id"], "alice");
    assert_eq!(own.body["state"], "stored");

    // Another key is told exactly what it is told for an id never used.
    let other = app.status(SECOND_API_KEY, ids[0]).await;
    let missing = app.status(SECOND_API_KEY, ids[0] + 1000).await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    assert_eq!(other.code(), "not_found");
    assert_eq!(other.body, missing.body);

    // A signing sender's notifications are no API key's.
    let body = r#"{"recipientId":"bob","message":"m"}"#;
    let now = now_secs();
    let signature = sign(SIGNING_SECRET, "status-1", now, body.as_bytes()).unwrap();
    let signed = app
        .request(
            "POST",
            "/webhook/notify",
            &[
                ("webhook-id", "status-1"),
                ("webhook-timestamp", &now.to_string()),
                ("webhook-signature", &signature),
            ],
            Some(body),
        )
        .await;
    assert_eq!(signed.status, StatusCode::ACCEPTED, "{}", signed.body);
    let signed_id = signed.body["id"].as_u64().unwrap();
    for key in [API_KEY, SECOND_API_KEY] {
        let reply = app.status(key, signed_id).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND);
        assert_eq!(reply.body, missing.body);
    }
}
