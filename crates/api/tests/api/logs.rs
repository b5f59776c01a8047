//! What the api logs never includes a credential: API keys, tokens, the JWT
//! secret, signing secrets or signatures, even at debug level and even when
//! they are refused.

use awc::http::StatusCode;
use notify_auth::webhook::sign;
use notify_testkit::process::{assert_not_logged, free_port, LoggedProcess};
use notify_testkit::{eventually, unique};

use crate::helpers::*;

#[actix_web::test]
async fn credentials_never_reach_the_log() {
    let db = TestDb::create().await;
    let port = free_port();
    let prefix = format!("{}:", unique("logs"));
    let mut api = LoggedProcess::spawn(
        env!("CARGO_BIN_EXE_notify-api"),
        &[
            ("API_ADDR", &format!("127.0.0.1:{port}")),
            ("DATABASE_URL", &db.url),
            ("REDIS_URL", &redis_url()),
            ("JWT_SECRET", JWT_SECRET),
            ("WEBHOOK_API_KEYS", API_KEY),
            (
                "WEBHOOK_SIGNING_SECRETS",
                &format!("billing={SIGNING_SECRET}"),
            ),
            ("CHANNEL_PREFIX", &prefix),
            ("API_WORKERS", "1"),
            ("RUST_LOG", "debug"),
        ],
    );
    let base = format!("http://127.0.0.1:{port}");
    let client = awc::Client::default();
    eventually("api ready", std::time::Duration::from_secs(30), || async {
        matches!(client.get(format!("{base}/ready")).send().await, Ok(r) if r.status() == StatusCode::OK)
    })
    .await;

    let token = notify_testkit::token("alice");
    let wrong_key = unique("wrong-api-key");
    let forged_token = format!("{}x", notify_testkit::token("mallory"));
    let body = r#"{"recipientId":"alice","message":"m"}"#;
    let now = now_secs();
    let signature = sign(SIGNING_SECRET, "log-1", now, body.as_bytes()).unwrap();
    let post = |path: &str, headers: Vec<(&'static str, String)>, body: String| {
        let mut request = client.post(format!("{base}{path}"));
        for header in headers {
            request = request.insert_header(header);
        }
        request
            .insert_header(("content-type", "application/json"))
            .send_body(body)
    };
    let statuses = [
        post(
            "/webhook/notify",
            vec![("x-api-key", API_KEY.into())],
            body.into(),
        )
        .await,
        post(
            "/webhook/notify",
            vec![],
            format!(r#"{{"recipientId":"alice","message":"m","apiKey":"{API_KEY}"}}"#),
        )
        .await,
        post(
            "/webhook/notify",
            vec![],
            format!(r#"{{"recipientId":"alice","message":"m","apiKey":"{wrong_key}"}}"#),
        )
        .await,
        post(
            "/webhook/notify",
            vec![("authorization", format!("Bearer {wrong_key}"))],
            body.into(),
        )
        .await,
        post(
            "/webhook/notify",
            vec![
                ("webhook-id", "log-1".into()),
                ("webhook-timestamp", now.to_string()),
                ("webhook-signature", signature.clone()),
            ],
            body.into(),
        )
        .await,
        client
            .get(format!("{base}/api/notifications"))
            .insert_header(("authorization", format!("Bearer {token}")))
            .send()
            .await,
        client
            .get(format!("{base}/api/notifications?token={forged_token}"))
            .insert_header(("authorization", format!("Bearer {forged_token}")))
            .send()
            .await,
    ]
    .map(|r| r.map(|r| r.status().as_u16()).unwrap_or(0));
    assert_eq!(statuses, [202, 202, 401, 401, 202, 200, 401]);

    let log = api.stop().await;
    assert!(log.contains("api listening"), "nothing was captured: {log}");
    assert_not_logged(
        &log,
        &[
            ("API key", API_KEY),
            ("refused API key", &wrong_key),
            ("JWT secret", JWT_SECRET),
            ("user token", &token),
            ("token signature", token.rsplit('.').next().unwrap()),
            ("refused token", &forged_token),
            (
                "signing secret",
                SIGNING_SECRET.trim_start_matches("whsec_"),
            ),
            ("webhook signature", signature.trim_start_matches("v1,")),
        ],
    );
}
