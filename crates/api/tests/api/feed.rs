use awc::http::StatusCode;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::helpers::*;

fn ids_of(reply: &Reply) -> Vec<u64> {
    reply.body["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_u64().unwrap())
        .collect()
}

#[actix_web::test]
async fn feed_pages_newest_first_with_a_cursor() {
    let app = TestApp::spawn().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.extend(app.notify(&["alice", "bob"], &format!("n{i}")).await);
    }
    let alice: Vec<u64> = ids.iter().copied().step_by(2).collect();

    let page = app
        .as_user("alice", "GET", "/api/notifications?limit=2")
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(ids_of(&page), vec![alice[4], alice[3]]);
    assert_eq!(page.body["unread_count"], 5);
    assert_eq!(page.body["next_cursor"], alice[3]);

    let page = app
        .as_user(
            "alice",
            "GET",
            &format!("/api/notifications?limit=2&before={}", alice[3]),
        )
        .await;
    assert_eq!(ids_of(&page), vec![alice[2], alice[1]]);
    let page = app
        .as_user(
            "alice",
            "GET",
            &format!("/api/notifications?limit=2&before={}", alice[1]),
        )
        .await;
    assert_eq!(ids_of(&page), vec![alice[0]]);
    assert_eq!(page.body["next_cursor"], serde_json::Value::Null);

    // Only one's own rows, never another user's.
    let page = app
        .as_user("bob", "GET", "/api/notifications?limit=100")
        .await;
    assert!(page.body["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .all(|n| n["user_id"] == "bob"));
    assert_eq!(ids_of(&page).len(), 5);
}

#[actix_web::test]
async fn reading_one_updates_counts_and_tells_other_devices() {
    let app = TestApp::spawn().await;
    let mut alice = app.subscribe("alice").await;
    let ids = app.notify(&["alice"], "a").await;
    let ids2 = app.notify(&["alice"], "b").await;
    alice.next().await;
    alice.next().await;

    let reply = app
        .as_user(
            "alice",
            "PUT",
            &format!("/api/notifications/{}/read", ids[0]),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        reply.body,
        json!({"id": ids[0], "changed": true, "unread_count": 1})
    );
    assert_eq!(alice.next().await, json!({"type": "read", "ids": [ids[0]]}));

    // Reading again is harmless and publishes nothing.
    let reply = app
        .as_user(
            "alice",
            "PUT",
            &format!("/api/notifications/{}/read", ids[0]),
        )
        .await;
    assert_eq!(reply.body["changed"], false);

    let unread = app
        .as_user("alice", "GET", "/api/notifications?unread_only=true")
        .await;
    assert_eq!(ids_of(&unread), ids2);
    let count = app
        .as_user("alice", "GET", "/api/notifications/unread-count")
        .await;
    assert_eq!(count.body, json!({"unread_count": 1}));

    let reply = app
        .as_user("alice", "PUT", "/api/notifications/read-all")
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.body,
        json!({"updated": 1, "up_to": ids2[0], "unread_count": 0})
    );
    assert_eq!(
        alice.next().await,
        json!({"type": "read_all", "up_to": ids2[0]})
    );
    let count = app
        .as_user("alice", "GET", "/api/notifications/unread-count")
        .await;
    assert_eq!(count.body["unread_count"], 0);
    assert_eq!(
        app.count("SELECT COUNT(*) AS n FROM notifications WHERE read_at IS NULL")
            .await,
        0
    );
}

#[actix_web::test]
async fn read_all_leaves_later_notifications_unread() {
    let app = TestApp::spawn().await;
    let first = app.notify(&["alice"], "a").await;
    let reply = app
        .as_user("alice", "PUT", "/api/notifications/read-all")
        .await;
    assert_eq!(reply.body["up_to"], first[0]);
    let later = app.notify(&["alice"], "b").await;
    let count = app
        .as_user("alice", "GET", "/api/notifications/unread-count")
        .await;
    assert_eq!(count.body["unread_count"], 1);
    let unread = app
        .as_user("alice", "GET", "/api/notifications?unread_only=true")
        .await;
    assert_eq!(ids_of(&unread), later);

    // Nothing to read: no change, no event.
    let empty = app
        .as_user("nobody", "PUT", "/api/notifications/read-all")
        .await;
    assert_eq!(
        empty.body,
        json!({"updated": 0, "up_to": null, "unread_count": 0})
    );
}

#[actix_web::test]
async fn delete_removes_only_ones_own() {
    let app = TestApp::spawn().await;
    let mut alice = app.subscribe("alice").await;
    let ids = app.notify(&["alice", "bob"], "x").await;
    assert_eq!(alice.next().await["type"], "notification");

    // Bob cannot see, read or delete Alice's notification: it is 404 to him.
    for (method, path) in [
        ("PUT", format!("/api/notifications/{}/read", ids[0])),
        ("DELETE", format!("/api/notifications/{}", ids[0])),
    ] {
        let reply = app.as_user("bob", method, &path).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{method} {path}");
        assert_eq!(reply.code(), "not_found");
    }
    assert_eq!(
        app.count("SELECT COUNT(*) AS n FROM notifications WHERE read_at IS NOT NULL")
            .await,
        0
    );

    let reply = app
        .as_user("alice", "DELETE", &format!("/api/notifications/{}", ids[0]))
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(
        alice.next().await,
        json!({"type": "deleted", "ids": [ids[0]]})
    );
    assert_eq!(app.rows().await, 1);
    let again = app
        .as_user("alice", "DELETE", &format!("/api/notifications/{}", ids[0]))
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
}

#[actix_web::test]
async fn bad_ids_and_queries_are_400() {
    let app = TestApp::spawn().await;
    app.notify(&["alice"], "x").await;
    for (method, path, code) in [
        ("PUT", "/api/notifications/abc/read", "invalid_id"),
        ("PUT", "/api/notifications/-1/read", "invalid_id"),
        ("DELETE", "/api/notifications/1.5", "invalid_id"),
        ("GET", "/api/notifications?limit=0", "invalid_query"),
        ("GET", "/api/notifications?limit=101", "invalid_query"),
        ("GET", "/api/notifications?limit=abc", "invalid_query"),
        ("GET", "/api/notifications?before=x", "invalid_query"),
        (
            "GET",
            "/api/notifications?unread_only=maybe",
            "invalid_query",
        ),
    ] {
        let reply = app.as_user("alice", method, path).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{method} {path}");
        assert_eq!(reply.code(), code, "{method} {path}");
    }
    assert_eq!(
        app.count("SELECT COUNT(*) AS n FROM notifications WHERE read_at IS NULL")
            .await,
        1
    );
}

#[actix_web::test]
async fn user_endpoints_refuse_bad_tokens() {
    let app = TestApp::spawn().await;
    app.notify(&["alice"], "x").await;
    let now = now_secs();
    let sign = |alg: Algorithm, secret: &[u8], claims: serde_json::Value| {
        encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    };
    let expired = sign(
        Algorithm::HS256,
        JWT_SECRET.as_bytes(),
        json!({"sub": "alice", "exp": now - 3600}),
    );
    let forged = sign(
        Algorithm::HS256,
        b"some-other-secret-value",
        json!({"sub": "alice", "exp": now + 600}),
    );
    let hs512 = sign(
        Algorithm::HS512,
        JWT_SECRET.as_bytes(),
        json!({"sub": "alice", "exp": now + 600}),
    );
    let no_exp = sign(
        Algorithm::HS256,
        JWT_SECRET.as_bytes(),
        json!({"sub": "alice"}),
    );
    let no_sub = sign(
        Algorithm::HS256,
        JWT_SECRET.as_bytes(),
        json!({"exp": now + 600}),
    );
    // {"alg":"none"} with no signature.
    let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbGljZSIsImV4cCI6OTk5OTk5OTk5OX0."
        .to_string();
    let cases = [
        (None, "missing_credentials"),
        (Some(format!("Bearer {expired}")), "token_expired"),
        (Some(format!("Bearer {forged}")), "invalid_token"),
        (Some(format!("Bearer {hs512}")), "invalid_token"),
        (Some(format!("Bearer {no_exp}")), "invalid_token"),
        (Some(format!("Bearer {no_sub}")), "invalid_token"),
        (Some(format!("Bearer {none}")), "invalid_token"),
        (Some("Bearer not.a.jwt".into()), "invalid_token"),
        (Some(API_KEY.into()), "missing_credentials"),
    ];
    for (auth, code) in &cases {
        for (method, path) in [
            ("GET", "/api/notifications"),
            ("GET", "/api/notifications/unread-count"),
            ("PUT", "/api/notifications/read-all"),
            ("DELETE", "/api/notifications/1"),
        ] {
            let headers: Vec<(&str, &str)> =
                auth.iter().map(|a| ("authorization", a.as_str())).collect();
            let reply = app.request(method, path, &headers, None).await;
            assert_eq!(
                reply.status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} {auth:?}"
            );
            assert_eq!(reply.code(), *code, "{method} {path}");
            assert_eq!(reply.headers.get("www-authenticate").unwrap(), "Bearer");
        }
    }
    assert_eq!(app.rows().await, 1);
    assert_eq!(
        app.count("SELECT COUNT(*) AS n FROM notifications WHERE read_at IS NULL")
            .await,
        1
    );
}

#[actix_web::test]
async fn a_token_expired_seconds_ago_is_refused_as_expired() {
    // The gateway refuses the same token before the upgrade: both use one
    // leeway (none by default), not the JWT library's 60 s.
    let app = TestApp::spawn().await;
    let expired = encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "alice", "exp": now_secs() - 10}),
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap();
    let auth = format!("Bearer {expired}");
    let reply = app
        .request(
            "GET",
            "/api/notifications",
            &[("authorization", &auth)],
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.code(), "token_expired");
}
