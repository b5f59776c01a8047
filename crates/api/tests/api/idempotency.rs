use awc::http::StatusCode;
use notify_store::{Claim, IdempotencyKey};

use crate::helpers::*;

const BODY: &str = r#"{"recipients":["alice","bob"],"title":"t","message":"m"}"#;

async fn send_with_key(app: &TestApp, key: &str, body: &str) -> Reply {
    app.request(
        "POST",
        "/v1/notifications",
        &[("x-api-key", API_KEY), ("idempotency-key", key)],
        Some(body),
    )
    .await
}

#[actix_web::test]
async fn same_key_and_body_replays_the_first_response() {
    let app = TestApp::spawn().await;
    let mut alice = app.subscribe("alice").await;
    let first = send_with_key(&app, "order-42", BODY).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.body);
    let again = send_with_key(&app, "order-42", BODY).await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(again.body, first.body);
    assert_eq!(app.rows().await, 2);

    // The replay published nothing: the next event after the first is new.
    assert_eq!(
        alice.next().await["notification"]["id"],
        first.body["ids"][0]
    );
    let ids = app.notify(&["alice"], "later").await;
    assert_eq!(alice.next().await["notification"]["id"], ids[0]);

    // Keys are scoped per sender: another API key may use the same one.
    let other = app
        .request(
            "POST",
            "/v1/notifications",
            &[
                ("x-api-key", SECOND_API_KEY),
                ("idempotency-key", "order-42"),
            ],
            Some(BODY),
        )
        .await;
    assert_eq!(other.status, StatusCode::ACCEPTED);
    assert_ne!(other.body, first.body);
}

#[actix_web::test]
async fn same_key_with_another_body_is_422() {
    let app = TestApp::spawn().await;
    assert_eq!(
        send_with_key(&app, "k", BODY).await.status,
        StatusCode::ACCEPTED
    );
    let other = send_with_key(
        &app,
        "k",
        r#"{"recipients":["alice"],"title":"t","message":"x"}"#,
    )
    .await;
    assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(other.code(), "idempotency_key_reused");
    assert_eq!(app.rows().await, 2);
}

#[actix_web::test]
async fn a_key_in_flight_is_409() {
    let app = TestApp::spawn().await;
    // Another request holds the claim, as it would while its insert runs.
    let source = notify_auth::ApiKeys::parse(API_KEY)
        .verify(API_KEY)
        .unwrap()
        .0;
    let mut conn = app.db_conn().await;
    let hash = {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"/v1/notifications\0");
        h.update(BODY.as_bytes());
        h.finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    assert_eq!(
        IdempotencyKey::claim(&mut conn, &source, "busy", &hash)
            .await
            .unwrap(),
        Claim::Fresh
    );
    let reply = send_with_key(&app, "busy", BODY).await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert_eq!(reply.code(), "idempotency_key_in_progress");
    assert_eq!(app.rows().await, 0);
}

#[actix_web::test]
async fn concurrent_duplicates_store_once() {
    let app = TestApp::spawn().await;
    let replies =
        futures_util::future::join_all((0..8).map(|_| send_with_key(&app, "race", BODY))).await;
    let accepted: Vec<_> = replies
        .iter()
        .filter(|r| r.status == StatusCode::ACCEPTED)
        .collect();
    assert!(!accepted.is_empty());
    for reply in &replies {
        assert!(
            reply.status == StatusCode::ACCEPTED || reply.code() == "idempotency_key_in_progress",
            "{} {}",
            reply.status,
            reply.body
        );
    }
    for reply in &accepted {
        assert_eq!(reply.body, accepted[0].body);
    }
    assert_eq!(app.rows().await, 2);
}

#[actix_web::test]
async fn malformed_keys_are_refused() {
    let app = TestApp::spawn().await;
    for key in ["", &"k".repeat(201), "has space"] {
        let reply = send_with_key(&app, key, BODY).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{key:?}");
        assert_eq!(reply.code(), "invalid_idempotency_key");
    }
    assert_eq!(app.rows().await, 0);
}

#[actix_web::test]
async fn keys_older_than_the_replay_window_are_purged_and_newer_ones_kept() {
    let app = TestApp::spawn().await;
    assert_eq!(
        send_with_key(&app, "recent", BODY).await.status,
        StatusCode::ACCEPTED
    );
    // More expired keys than one purge statement deletes, and one just
    // inside the window.
    app.db
        .execute(
            "INSERT INTO idempotency_keys (source, idempotency_key, request_hash, response, created_at) \
             WITH RECURSIVE n (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50) \
             SELECT 'sender', CONCAT('old-', a.i, '-', b.i), REPEAT('0', 64), '{}', \
             UTC_TIMESTAMP(6) - INTERVAL 25 HOUR FROM n AS a CROSS JOIN n AS b",
        )
        .await;
    app.db
        .execute(
            "INSERT INTO idempotency_keys (source, idempotency_key, request_hash, response, created_at) \
             VALUES ('sender', 'kept', REPEAT('0', 64), '{}', UTC_TIMESTAMP(6) - INTERVAL 23 HOUR)",
        )
        .await;
    let pool = notify_store::build_pool(&app.db.url, 1).unwrap();
    let purged = notify_api::housekeeping::purge_idempotency_keys(&pool)
        .await
        .unwrap();
    assert_eq!(purged, 2500);
    assert_eq!(
        app.count("SELECT COUNT(*) AS n FROM idempotency_keys WHERE idempotency_key IN ('recent', 'kept')")
            .await,
        2
    );
    assert_eq!(
        app.count("SELECT COUNT(*) AS n FROM idempotency_keys")
            .await,
        2
    );
    // The key kept still replays.
    let again = send_with_key(&app, "recent", BODY).await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(app.rows().await, 2);
}

#[actix_web::test]
async fn a_key_used_again_after_its_window_is_refused_and_stores_nothing() {
    let app = TestApp::spawn().await;
    let first = send_with_key(&app, "order-7", BODY).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.body);
    // A day later its response is purged.
    app.db
        .execute("UPDATE idempotency_keys SET created_at = created_at - INTERVAL 25 HOUR")
        .await;
    let pool = notify_store::build_pool(&app.db.url, 1).unwrap();
    notify_api::housekeeping::purge_idempotency_keys(&pool)
        .await
        .unwrap();
    assert_eq!(
        app.count("SELECT COUNT(*) AS n FROM idempotency_keys")
            .await,
        0
    );

    for body in [
        BODY,
        r#"{"recipients":["carol"],"title":"t","message":"m"}"#,
    ] {
        let reply = send_with_key(&app, "order-7", body).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            reply.body
        );
        assert_eq!(reply.code(), "idempotency_key_expired");
    }
    assert_eq!(app.rows().await, 2);
    // Nothing was left claimed: another key works at once.
    assert_eq!(
        app.count("SELECT COUNT(*) AS n FROM idempotency_keys")
            .await,
        0
    );
    assert_eq!(
        send_with_key(&app, "order-8", BODY).await.status,
        StatusCode::ACCEPTED
    );
}
