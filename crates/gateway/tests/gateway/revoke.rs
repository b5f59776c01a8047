//! Revocation: a user disconnect or a revoked token closes the affected
//! connections on every gateway and is refused at the next connect, while
//! everyone else keeps receiving.

use std::time::Instant;

use notify_testkit::ws::WsClient;
use notify_testkit::{now_secs, token_with, unique};
use serde_json::{json, Value};

use crate::helpers::*;

impl Cluster {
    /// POSTs to the api as a server; returns (status, body).
    pub(crate) async fn api_post(&self, path: &str, body: Option<Value>) -> (u16, Value) {
        let request = awc::Client::new()
            .post(format!("{}{path}", self.api))
            .insert_header(("x-api-key", API_KEY));
        let mut response = match body {
            Some(body) => request.send_json(&body).await,
            None => request.send().await,
        }
        .expect("api request");
        let reply: Value = response.json().await.expect("json reply");
        (response.status().as_u16(), reply)
    }
}

/// Connecting with `token` is refused before the upgrade with this code.
async fn refused_at_connect(g: &Gateway, token: &str) -> u16 {
    let auth = format!("Bearer {token}");
    match WsClient::connect(&format!("{}/ws", g.base), &[("authorization", &auth)]).await {
        Ok(_) => panic!("connected with a revoked token"),
        Err(status) => status,
    }
}

#[actix_web::test]
async fn a_user_disconnect_closes_every_gateway_and_refuses_old_tokens() {
    let cluster = Cluster::start().await;
    let (g1, g2) = (cluster.gateway().await, cluster.gateway().await);
    let issued = now_secs() - 5;
    let old = token_with("ann", &unique("jti"), issued);
    let (mut ann1, _) = WsClient::connect_as(&g1.base, &old).await;
    let (mut ann2, _) = WsClient::connect_as(&g2.base, &old).await;
    let (mut bob, _) = g2.connect("bob").await;

    let started = Instant::now();
    let (status, reply) = cluster.api_post("/v1/users/ann/disconnect", None).await;
    assert_eq!(status, 200, "{reply}");
    for ann in [&mut ann1, &mut ann2] {
        assert_eq!(ann.closed().await, (Some(1008), "token revoked".into()));
    }
    println!(
        "both connections closed {:?} after the request",
        started.elapsed()
    );

    // The old token is refused at the next connect, by header and by frame.
    assert_eq!(refused_at_connect(&g1, &old).await, 401);
    let mut by_frame = WsClient::connect(&format!("{}/ws", g2.base), &[])
        .await
        .unwrap();
    by_frame
        .send(&json!({"type": "auth", "token": old}).to_string())
        .await;
    assert_eq!(
        by_frame.closed().await,
        (Some(1008), "token revoked".into())
    );

    // Bob was not affected; a token issued after the disconnect works.
    let ids = cluster.notify(&["bob", "ann"], "after").await;
    assert_eq!(bob.notification_id().await, ids[0]);
    let fresh = token_with("ann", &unique("jti"), now_secs() + 1);
    let (mut ann, _) = WsClient::connect_as(&g1.base, &fresh).await;
    let ids = cluster.notify(&["ann"], "to the new connection").await;
    assert_eq!(ann.notification_id().await, ids[0]);
}

#[actix_web::test]
async fn a_revoked_token_closes_only_its_connections() {
    let cluster = Cluster::start().await;
    let (g1, g2) = (cluster.gateway().await, cluster.gateway().await);
    let (stolen, kept) = (unique("jti"), unique("jti"));
    let stolen_token = token_with("cy", &stolen, now_secs());
    let (mut on_g1, _) = WsClient::connect_as(&g1.base, &stolen_token).await;
    let (mut on_g2, _) = WsClient::connect_as(&g2.base, &stolen_token).await;
    let (mut other, _) = WsClient::connect_as(&g2.base, &token_with("cy", &kept, now_secs())).await;

    let (status, reply) = cluster
        .api_post(
            "/v1/tokens/revoke",
            Some(json!({"jti": stolen, "exp": now_secs() + 600})),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    for client in [&mut on_g1, &mut on_g2] {
        assert_eq!(client.closed().await, (Some(1008), "token revoked".into()));
    }
    assert_eq!(refused_at_connect(&g2, &stolen_token).await, 401);

    // The same user's other token keeps its connection and its delivery.
    let ids = cluster.notify(&["cy"], "still here").await;
    assert_eq!(other.notification_id().await, ids[0]);
    // A refresh to the revoked token is refused too.
    other
        .send(&json!({"type": "refresh", "token": stolen_token}).to_string())
        .await;
    let reply = other.text().await;
    assert_eq!(reply["type"], "error", "{reply}");
    assert_eq!(reply["message"], "token revoked");
}

#[actix_web::test]
async fn revocation_requests_are_checked() {
    let cluster = Cluster::start().await;
    let g = cluster.gateway().await;
    let (mut dee, _) = g.connect("dee").await;
    let cases = [
        ("/v1/tokens/revoke", Some(json!({})), 400, "invalid_body"),
        (
            "/v1/tokens/revoke",
            Some(json!({"jti": ""})),
            400,
            "invalid_field",
        ),
        (
            "/v1/tokens/revoke",
            Some(json!({"jti": "a\u{1}b"})),
            400,
            "invalid_field",
        ),
        (
            "/v1/tokens/revoke",
            Some(json!({"jti": "x".repeat(256)})),
            400,
            "invalid_field",
        ),
        (
            "/v1/tokens/revoke",
            Some(json!({"jti": "j", "exp": "soon"})),
            400,
            "invalid_body",
        ),
        ("/v1/users/%20dee/disconnect", None, 400, "invalid_field"),
    ];
    for (path, body, status, code) in cases {
        let (got, reply) = cluster.api_post(path, body.clone()).await;
        assert_eq!(
            (got, reply["error"]["code"].as_str()),
            (status, Some(code)),
            "{path} {body:?}"
        );
    }
    // Without an API key, or with a user token instead of one.
    for auth in [
        None,
        Some(format!("Bearer {}", notify_testkit::token("dee"))),
    ] {
        let mut request =
            awc::Client::new().post(format!("{}/v1/users/dee/disconnect", cluster.api));
        if let Some(auth) = &auth {
            request = request.insert_header(("authorization", auth.as_str()));
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), 401);
    }
    // Nothing was revoked: dee is still connected and receiving.
    let ids = cluster.notify(&["dee"], "unaffected").await;
    assert_eq!(dee.notification_id().await, ids[0]);
}
