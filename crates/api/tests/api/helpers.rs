use std::time::Duration;

use awc::http::StatusCode;
use diesel_async::{AsyncConnection, AsyncMysqlConnection};
use futures_util::StreamExt;
use notify_api::{Application, Config};
use notify_auth::{ApiKeys, JwtConfig, WebhookSecrets};
use serde_json::Value;

pub const API_KEY: &str = "test-api-key-1-8b1f0c2e7d4a";
pub const SECOND_API_KEY: &str = "test-api-key-2-5e9a3d6c1b70";
/// Standard Webhooks secrets of two senders; billing is rotating its own.
pub const SIGNING_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub const ROTATED_SECRET: &str = "whsec_dGhpcy1pcy1hLW5ldy1zZWNyZXQtZm9yLXRlc3Rz";
pub const CRM_SECRET: &str = "whsec_Y3JtLXNlbmRlci1zZWNyZXQtZm9yLXRlc3Rpbmc=";
pub use notify_testkit::{now_secs, redis_url, TestDb, JWT_SECRET};

pub struct TestApp {
    pub addr: String,
    pub prefix: String,
    pub db: TestDb,
    pub client: awc::Client,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: awc::http::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
        Self::spawn_on(TestDb::create().await, adjust).await
    }

    /// An api on the database `db`, which may be on another server.
    pub async fn spawn_on(db: TestDb, adjust: impl FnOnce(&mut Config)) -> TestApp {
        notify_service::telemetry::init();
        let prefix = format!("{}:", notify_testkit::unique("t"));
        let mut config = Config::for_tests(
            db.url.clone(),
            redis_url(),
            JwtConfig::hs256(JWT_SECRET),
            ApiKeys::parse(&format!("{API_KEY},{SECOND_API_KEY}")),
            prefix.clone(),
        );
        config.webhook_secrets = WebhookSecrets::parse(&format!(
            "billing={SIGNING_SECRET},billing={ROTATED_SECRET},crm={CRM_SECRET}"
        ))
        .unwrap();
        adjust(&mut config);
        let app = Application::build(config).await.expect("build app");
        let addr = format!("http://127.0.0.1:{}", app.port());
        tokio::spawn(app.run_until_stopped(std::future::pending()));
        TestApp {
            addr,
            prefix,
            db,
            client: awc::Client::builder()
                .timeout(Duration::from_secs(30))
                .finish(),
        }
    }

    pub fn token(&self, user: &str) -> String {
        notify_testkit::token(user)
    }

    /// One series of the api's `/metrics`.
    pub async fn metric(&self, series: &str) -> u64 {
        let reply = self.request("GET", "/metrics", &[], None).await;
        assert_eq!(reply.status, StatusCode::OK);
        notify_testkit::metric(reply.body.as_str().expect("text"), series)
    }

    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Reply {
        let mut req = self
            .client
            .request(method.parse().unwrap(), format!("{}{path}", self.addr));
        for (name, value) in headers {
            req = req.insert_header((*name, *value));
        }
        let mut resp = match body {
            Some(body) => req
                .insert_header(("content-type", "application/json"))
                .send_body(body.to_owned())
                .await
                .expect("request"),
            None => req.send().await.expect("request"),
        };
        let bytes = resp.body().limit(10 << 20).await.expect("body");
        Reply {
            status: resp.status(),
            headers: resp.headers().clone(),
            body: if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
            },
        }
    }

    /// POSTs as a server with the test API key.
    pub async fn send(&self, path: &str, body: &str) -> Reply {
        self.request("POST", path, &[("x-api-key", API_KEY)], Some(body))
            .await
    }

    /// Calls a user endpoint with `user`'s token.
    pub async fn as_user(&self, user: &str, method: &str, path: &str) -> Reply {
        let auth = format!("Bearer {}", self.token(user));
        self.request(method, path, &[("authorization", &auth)], None)
            .await
    }

    pub async fn notify(&self, recipients: &[&str], title: &str) -> Vec<u64> {
        let body = serde_json::json!({
            "recipients": recipients, "title": title, "message": "m"
        });
        let reply = self.send("/v1/notifications", &body.to_string()).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{:?}", reply.body);
        reply.body["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect()
    }

    pub async fn db_conn(&self) -> AsyncMysqlConnection {
        AsyncMysqlConnection::establish(&self.db.url).await.unwrap()
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.db.count(sql).await
    }

    pub async fn rows(&self) -> i64 {
        self.count("SELECT COUNT(*) AS n FROM notifications").await
    }

    pub async fn subscribe(&self, user: &str) -> Subscription {
        let client = redis::Client::open(redis_url()).unwrap();
        let mut pubsub = client.get_async_pubsub().await.unwrap();
        pubsub
            .subscribe(format!("{}user:{user}", self.prefix))
            .await
            .unwrap();
        Subscription {
            stream: Box::pin(pubsub.into_on_message()),
        }
    }
}

/// Events received on one user's channel.
pub struct Subscription {
    stream: std::pin::Pin<Box<dyn futures_util::Stream<Item = redis::Msg> + Send>>,
}

impl Subscription {
    pub async fn next(&mut self) -> Value {
        let msg = tokio::time::timeout(Duration::from_secs(10), self.stream.next())
            .await
            .expect("no event within 10 s")
            .expect("subscription ended");
        let payload: String = msg.get_payload().unwrap();
        serde_json::from_str(&payload).unwrap()
    }
}
