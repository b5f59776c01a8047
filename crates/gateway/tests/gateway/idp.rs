//! A gateway that trusts an identity provider's tokens: RS256, keys from the
//! provider's JWKS URL (served here by a local HTTP server).

use std::net::TcpListener;
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use notify_auth::{JwtConfig, JwtKey};
use notify_testkit::ws::WsClient;
use notify_testkit::{now_secs, token};
use serde_json::json;

use crate::helpers::*;

const RSA_PRIVATE: &[u8] = include_bytes!("../../../testkit/keys/rsa-private.pem");
const RSA_OTHER: &[u8] = include_bytes!("../../../testkit/keys/rsa-other-private.pem");
const ISSUER: &str = "https://idp.example.com/";
const AUDIENCE: &str = "notify";

/// Serves `{"keys":[...]}` with the public half of `private_pem` as `kid`.
fn serve_jwks(private_pem: &[u8], kid: &str) -> String {
    let key = EncodingKey::from_rsa_pem(private_pem).unwrap();
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
    jwk.common.key_id = Some(kid.into());
    let document = serde_json::to_string(&JwkSet { keys: vec![jwk] }).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(move || {
        let document = document.clone();
        App::new().route(
            "/.well-known/jwks.json",
            web::get().to(move || {
                let document = document.clone();
                async move {
                    HttpResponse::Ok()
                        .content_type("application/json")
                        .body(document)
                }
            }),
        )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    actix_web::rt::spawn(server);
    format!("http://127.0.0.1:{port}/.well-known/jwks.json")
}

fn idp_token(private_pem: &[u8], kid: &str, claims: serde_json::Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.into());
    encode(
        &header,
        &claims,
        &EncodingKey::from_rsa_pem(private_pem).unwrap(),
    )
    .unwrap()
}

#[actix_web::test]
async fn identity_provider_tokens_are_verified_through_its_jwks() {
    let jwks = serve_jwks(RSA_PRIVATE, "idp-key-1");
    let cluster = Cluster::start().await;
    let g = cluster
        .gateway_with(|c| {
            c.jwt = JwtConfig {
                key: JwtKey::Jwks {
                    location: jwks,
                    min_refresh: Duration::from_secs(30),
                    max_age: Duration::from_secs(3600),
                },
                issuer: Some(ISSUER.into()),
                audience: Some(AUDIENCE.into()),
                accept_any_audience: false,
                max_lifetime: Duration::from_secs(3600),
                leeway: Duration::ZERO,
                roles_claim: "roles".into(),
            }
        })
        .await;
    let claims = |sub: &str, aud: &str| json!({"sub": sub, "iss": ISSUER, "aud": aud, "iat": now_secs(), "exp": now_secs() + 600});

    let good = idp_token(RSA_PRIVATE, "idp-key-1", claims("ivy", AUDIENCE));
    let (mut ivy, welcome) = WsClient::connect_as(&g.base, &good).await;
    assert_eq!(welcome["type"], "welcome");

    let url = format!("{}/ws", g.base);
    for (what, refused) in [
        ("our own HS256 token", token("ivy")),
        (
            "another key under the provider's kid",
            idp_token(RSA_OTHER, "idp-key-1", claims("ivy", AUDIENCE)),
        ),
        (
            "an unknown kid",
            idp_token(RSA_OTHER, "idp-key-2", claims("ivy", AUDIENCE)),
        ),
        (
            "a token valid for longer than the maximum lifetime",
            idp_token(
                RSA_PRIVATE,
                "idp-key-1",
                json!({"sub": "ivy", "iss": ISSUER, "aud": AUDIENCE, "exp": now_secs() + 7200}),
            ),
        ),
        (
            "another audience",
            idp_token(RSA_PRIVATE, "idp-key-1", claims("ivy", "billing")),
        ),
    ] {
        let auth = format!("Bearer {refused}");
        let status = WsClient::connect(&url, &[("authorization", &auth)])
            .await
            .err();
        assert_eq!(status, Some(401), "{what}");
    }

    // The accepted connection is an ordinary one.
    let ids = cluster.notify(&["ivy"], "from the provider's user").await;
    assert_eq!(ivy.notification_id().await, ids[0]);
    assert_eq!(
        g.metric(r#"notify_gateway_refusals_total{code="invalid_token"}"#)
            .await,
        5
    );
}
