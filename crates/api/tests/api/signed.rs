//! Standard Webhooks signatures on the sending endpoints.

use awc::http::StatusCode;
use notify_auth::webhook::sign;

use crate::helpers::*;

const BODY: &str = r#"{"recipientId":"alice","message":"approved"}"#;

impl TestApp {
    /// POSTs `body` to the webhook route with these `webhook-*` headers.
    async fn signed(&self, id: &str, timestamp: &str, signature: &str, body: &str) -> Reply {
        self.request(
            "POST",
            "/webhook/notify",
            &[
                ("webhook-id", id),
                ("webhook-timestamp", timestamp),
                ("webhook-signature", signature),
            ],
            Some(body),
        )
        .await
    }
}

fn signature(secret: &str, id: &str, timestamp: u64, body: &str) -> String {
    sign(secret, id, timestamp, body.as_bytes()).unwrap()
}

#[actix_web::test]
async fn a_signed_webhook_is_accepted_and_names_its_sender() {
    let app = TestApp::spawn().await;
    let mut events = app.subscribe("alice").await;
    let now = now_secs();
    let sig = signature(SIGNING_SECRET, "msg_1", now, BODY);
    let reply = app.signed("msg_1", &now.to_string(), &sig, BODY).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{:?}", reply.body);
    assert_eq!(events.next().await["notification"]["message"], "approved");
    assert_eq!(
        app.count("SELECT COUNT(*) AS n FROM notifications WHERE source = 'signed:billing'")
            .await,
        1
    );
    // The same body on the many-recipient route, signed by another sender.
    let body = r#"{"recipients":["bob"],"title":"t","message":"m"}"#;
    let sig = signature(CRM_SECRET, "crm-1", now, body);
    let reply = app
        .request(
            "POST",
            "/v1/notifications",
            &[
                ("webhook-id", "crm-1"),
                ("webhook-timestamp", &now.to_string()),
                ("webhook-signature", &sig),
            ],
            Some(body),
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{:?}", reply.body);
    assert_eq!(
        app.count("SELECT COUNT(*) AS n FROM notifications WHERE source = 'signed:crm'")
            .await,
        1
    );
}

#[actix_web::test]
async fn every_active_secret_of_a_rotating_sender_works() {
    let app = TestApp::spawn().await;
    let now = now_secs();
    let ts = now.to_string();
    let old = signature(SIGNING_SECRET, "r1", now, BODY);
    let new = signature(ROTATED_SECRET, "r2", now, BODY);
    let both = format!(
        "{} {}",
        signature(ROTATED_SECRET, "r3", now, BODY),
        signature(SIGNING_SECRET, "r3", now, BODY)
    );
    for (id, sig) in [("r1", old), ("r2", new), ("r3", both)] {
        let reply = app.signed(id, &ts, &sig, BODY).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{id}: {:?}", reply.body);
    }
    assert_eq!(app.rows().await, 3);
}

#[actix_web::test]
async fn bad_signatures_are_refused_and_store_nothing() {
    let app = TestApp::spawn().await;
    let now = now_secs();
    let ts = now.to_string();
    let good = signature(SIGNING_SECRET, "m1", now, BODY);
    let truncated = good[..good.len() - 6].to_string();
    let other_body = signature(SIGNING_SECRET, "m1", now, r#"{"recipientId":"mallory"}"#);
    let unknown_secret = signature(
        "whsec_dW5rbm93bi1zZW5kZXItc2VjcmV0LWtleQ==",
        "m1",
        now,
        BODY,
    );
    for (what, sig) in [
        ("empty", "v1,".to_string()),
        ("blank", String::new()),
        ("truncated", truncated),
        ("another body", other_body),
        ("unknown secret", unknown_secret),
        ("wrong version", good.replace("v1,", "v2,")),
    ] {
        let reply = app.signed("m1", &ts, &sig, BODY).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(reply.code(), "invalid_signature", "{what}");
    }
    // Too old and too far ahead, correctly signed; ten seconds past the
    // tolerance, so the seconds this test takes cannot bring them back in.
    for ts in [now - 310, now + 310] {
        let sig = signature(SIGNING_SECRET, "m2", ts, BODY);
        let reply = app.signed("m2", &ts.to_string(), &sig, BODY).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(reply.code(), "invalid_webhook_timestamp");
    }
    let reply = app.signed("m3", "yesterday", &good, BODY).await;
    assert_eq!(reply.code(), "invalid_webhook_timestamp");
    let reply = app.signed("bad id", &ts, &good, BODY).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.code(), "invalid_webhook_id");
    // Only some of the headers.
    let reply = app
        .request(
            "POST",
            "/webhook/notify",
            &[("webhook-signature", &good), ("x-api-key", API_KEY)],
            Some(BODY),
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.code(), "invalid_signature");
    assert_eq!(app.rows().await, 0);
    // None of those used up the id: the genuine request still goes through.
    let reply = app.signed("m1", &ts, &good, BODY).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{:?}", reply.body);
}

#[actix_web::test]
async fn a_replayed_webhook_id_is_refused() {
    let app = TestApp::spawn().await;
    let now = now_secs();
    let sig = signature(SIGNING_SECRET, "once", now, BODY);
    let first = app.signed("once", &now.to_string(), &sig, BODY).await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    let replay = app.signed("once", &now.to_string(), &sig, BODY).await;
    assert_eq!(replay.status, StatusCode::CONFLICT);
    assert_eq!(replay.code(), "webhook_replayed");
    // Re-signed with a new timestamp, as a sender's retry would be: still
    // the same message.
    let later = now + 1;
    let sig = signature(SIGNING_SECRET, "once", later, BODY);
    let retry = app.signed("once", &later.to_string(), &sig, BODY).await;
    assert_eq!(retry.code(), "webhook_replayed");
    assert_eq!(app.rows().await, 1);
    // Another sender may use the same id.
    let sig = signature(CRM_SECRET, "once", now, BODY);
    let other = app.signed("once", &now.to_string(), &sig, BODY).await;
    assert_eq!(other.status, StatusCode::ACCEPTED);
}

#[actix_web::test]
async fn an_invalid_signed_request_does_not_use_up_its_id() {
    let app = TestApp::spawn().await;
    let now = now_secs();
    let bad = r#"{"recipientId":"alice","message":""}"#;
    let sig = signature(SIGNING_SECRET, "fix-me", now, bad);
    let reply = app.signed("fix-me", &now.to_string(), &sig, bad).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let sig = signature(SIGNING_SECRET, "fix-me", now, BODY);
    let reply = app.signed("fix-me", &now.to_string(), &sig, BODY).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{:?}", reply.body);
    assert_eq!(app.rows().await, 1);
}

#[actix_web::test]
async fn an_accepted_webhook_id_is_kept_beyond_its_acceptance_window() {
    let app = TestApp::spawn().await;
    let now = now_secs();
    let sig = signature(SIGNING_SECRET, "kept", now, BODY);
    let reply = app.signed("kept", &now.to_string(), &sig, BODY).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{:?}", reply.body);
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let kept_ms: i64 = redis::cmd("PTTL")
        .arg(format!("{}webhook:billing:kept", app.prefix))
        .query_async(&mut conn)
        .await
        .unwrap();
    // A timestamp is accepted for 2 × TOLERANCE_SECS + 1 s, and its id may
    // be first used at the very start of that window.
    let window_ms = ((2 * notify_auth::webhook::TOLERANCE_SECS + 1) * 1000) as i64;
    assert!(kept_ms > window_ms, "{kept_ms} <= {window_ms}");
}
