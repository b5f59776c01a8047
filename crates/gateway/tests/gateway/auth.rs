use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use notify_testkit::ws::{Received, WsClient};
use notify_testkit::{now_secs, token, JWT_SECRET};
use serde_json::json;

use crate::helpers::*;

fn sign(alg: Algorithm, secret: &[u8], claims: serde_json::Value) -> String {
    encode(
        &Header::new(alg),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

#[actix_web::test]
async fn token_in_header_query_or_first_frame() {
    let cluster = Cluster::start().await;
    let g = cluster.gateway().await;

    let (mut by_header, _) = g.connect("ann").await;
    let mut by_query = WsClient::connect(&format!("{}/ws?token={}", g.base, token("ann")), &[])
        .await
        .unwrap();
    assert_eq!(by_query.text().await["type"], "welcome");
    let mut by_frame = WsClient::connect(&format!("{}/ws", g.base), &[])
        .await
        .unwrap();
    by_frame
        .send(&json!({"type": "auth", "token": token("ann")}).to_string())
        .await;
    assert_eq!(by_frame.text().await["type"], "welcome");

    let ids = cluster.notify(&["ann"], "hello").await;
    for client in [&mut by_header, &mut by_query, &mut by_frame] {
        assert_eq!(client.notification_id().await, ids[0]);
    }
}

#[actix_web::test]
async fn bad_tokens_are_refused_before_the_upgrade() {
    let cluster = Cluster::start().await;
    let g = cluster.gateway().await;
    let now = now_secs();
    let cases = [
        (
            sign(
                Algorithm::HS256,
                JWT_SECRET.as_bytes(),
                json!({"sub": "ann", "exp": now - 3600}),
            ),
            "token_expired",
        ),
        (
            sign(
                Algorithm::HS256,
                b"not-the-secret-at-all",
                json!({"sub": "ann", "exp": now + 600}),
            ),
            "invalid_token",
        ),
        (
            sign(
                Algorithm::HS384,
                JWT_SECRET.as_bytes(),
                json!({"sub": "ann", "exp": now + 600}),
            ),
            "invalid_token",
        ),
        (
            sign(
                Algorithm::HS256,
                JWT_SECRET.as_bytes(),
                json!({"exp": now + 600}),
            ),
            "invalid_token",
        ),
        (
            sign(
                Algorithm::HS256,
                JWT_SECRET.as_bytes(),
                json!({"sub": "ann"}),
            ),
            "invalid_token",
        ),
        (
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbm4iLCJleHAiOjk5OTk5OTk5OTl9.".into(),
            "invalid_token",
        ),
        ("garbage".into(), "invalid_token"),
    ];
    for (bad, code) in &cases {
        let auth = format!("Bearer {bad}");
        let refused =
            WsClient::connect(&format!("{}/ws", g.base), &[("authorization", &auth)]).await;
        assert_eq!(refused.err(), Some(401), "{code}");
        let refused = WsClient::connect(&format!("{}/ws?token={bad}", g.base), &[]).await;
        assert_eq!(refused.err(), Some(401), "{code}");
        let (status, body) = get_with_auth(&format!("http://127.0.0.1:{}/ws", g.port), &auth).await;
        assert_eq!(status, 401);
        assert_eq!(body["error"]["code"], *code);
    }
    assert_eq!(g.connections().await, 0);
    assert!(cluster.subscribed_channels().await.is_empty());
}

#[actix_web::test]
async fn bad_first_frames_close_with_1008() {
    let cluster = Cluster::start().await;
    let g = cluster.gateway().await;
    let expired = sign(
        Algorithm::HS256,
        JWT_SECRET.as_bytes(),
        json!({"sub": "ann", "exp": now_secs() - 3600}),
    );
    let cases = [
        (
            json!({"type": "auth", "token": "garbage"}).to_string(),
            "invalid token",
        ),
        (
            json!({"type": "auth", "token": expired}).to_string(),
            "token expired",
        ),
        (r#"{"type":"ping"}"#.to_string(), "authentication required"),
        ("not json".to_string(), "authentication required"),
    ];
    for (frame, reason) in cases {
        let mut client = WsClient::connect(&format!("{}/ws", g.base), &[])
            .await
            .unwrap();
        client.send(&frame).await;
        assert_eq!(
            client.next().await,
            Received::Close(Some(1008), reason.into()),
            "{frame}"
        );
    }
    // Silence: closed when the authentication window ends.
    let mut silent = WsClient::connect(&format!("{}/ws", g.base), &[])
        .await
        .unwrap();
    assert_eq!(
        silent.next().await,
        Received::Close(Some(1008), "authentication timeout".into())
    );
    assert_eq!(g.connections().await, 0);
}

#[actix_web::test]
async fn origin_allowlist_is_enforced_when_configured() {
    let cluster = Cluster::start().await;
    let g = cluster
        .gateway_with(|c| c.allowed_origins = Some(vec!["https://app.example.com".into()]))
        .await;
    let auth = format!("Bearer {}", token("ann"));
    let refused = WsClient::connect(
        &format!("{}/ws", g.base),
        &[
            ("authorization", &auth),
            ("origin", "https://evil.example.com"),
        ],
    )
    .await;
    assert_eq!(refused.err(), Some(403));
    let mut allowed = WsClient::connect(
        &format!("{}/ws", g.base),
        &[
            ("authorization", &auth),
            ("origin", "https://app.example.com"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(allowed.text().await["type"], "welcome");
}

#[actix_web::test]
async fn plain_http_to_ws_is_400() {
    let cluster = Cluster::start().await;
    let g = cluster.gateway().await;
    let auth = format!("Bearer {}", token("ann"));
    let (status, body) = get_with_auth(&format!("http://127.0.0.1:{}/ws", g.port), &auth).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "not_websocket");
}

async fn get_with_auth(url: &str, auth: &str) -> (u16, serde_json::Value) {
    let mut response = awc::Client::new()
        .get(url)
        .insert_header(("authorization", auth))
        .send()
        .await
        .unwrap();
    let body = response.body().await.unwrap();
    (
        response.status().as_u16(),
        serde_json::from_slice(&body).unwrap_or_default(),
    )
}

#[actix_web::test]
async fn connections_end_with_their_token_unless_refreshed() {
    let cluster = Cluster::start().await;
    let g = cluster.gateway().await;
    let soon = now_secs() + 2;
    let short = |user: &str| {
        sign(
            Algorithm::HS256,
            JWT_SECRET.as_bytes(),
            json!({"sub": user, "exp": soon}),
        )
    };
    let (mut tom, _) = WsClient::connect_as(&g.base, &short("tom")).await;
    let (mut tim, _) = WsClient::connect_as(&g.base, &short("tim")).await;

    // A token for someone else, or an invalid one, does not extend anything.
    tim.send(&json!({"type": "refresh", "token": token("tom")}).to_string())
        .await;
    assert_eq!(tim.text().await["code"], "invalid_frame");
    tim.send(r#"{"type":"refresh","token":"garbage"}"#).await;
    assert_eq!(tim.text().await["code"], "invalid_frame");
    let later = now_secs() + 600;
    let fresh = sign(
        Algorithm::HS256,
        JWT_SECRET.as_bytes(),
        json!({"sub": "tim", "exp": later}),
    );
    tim.send(&json!({"type": "refresh", "token": fresh}).to_string())
        .await;
    assert_eq!(
        tim.text().await,
        json!({"type": "refreshed", "expires_at": later})
    );

    assert_eq!(tom.closed().await, (Some(1008), "token expired".into()));
    // Tim refreshed in time and still receives.
    let ids = cluster.notify(&["tim"], "still here").await;
    assert_eq!(tim.notification_id().await, ids[0]);
}

#[actix_web::test]
async fn a_token_expired_seconds_ago_is_refused_before_the_upgrade() {
    // Within the JWT library's default leeway: such a token used to get
    // `welcome` and then be closed at once with `token expired`, so clients
    // reconnected in a loop.
    let cluster = Cluster::start().await;
    let g = cluster.gateway().await;
    let expired = sign(
        Algorithm::HS256,
        JWT_SECRET.as_bytes(),
        json!({"sub": "ann", "exp": now_secs() - 10}),
    );
    let auth = format!("Bearer {expired}");
    let (status, body) = get_with_auth(&format!("http://127.0.0.1:{}/ws", g.port), &auth).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "token_expired");
    let refused = WsClient::connect(&format!("{}/ws", g.base), &[("authorization", &auth)]).await;
    assert_eq!(refused.err(), Some(401));
    let refused = WsClient::connect(&format!("{}/ws?token={expired}", g.base), &[]).await;
    assert_eq!(refused.err(), Some(401));
    // In a first frame: closed without a `welcome`.
    let mut by_frame = WsClient::connect(&format!("{}/ws", g.base), &[])
        .await
        .unwrap();
    by_frame
        .send(&json!({"type": "auth", "token": expired}).to_string())
        .await;
    assert_eq!(
        by_frame.next().await,
        Received::Close(Some(1008), "token expired".into())
    );
    assert_eq!(g.connections().await, 0);
}
