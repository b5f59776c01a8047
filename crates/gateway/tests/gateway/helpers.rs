use std::time::Duration;

use std::sync::Arc;

use notify_auth::{ApiKeys, JwtConfig, TopicPolicy};
use notify_gateway::config::{Drain, Limits};
use notify_testkit::{redis_url, token, unique, ws::WsClient, TestDb, JWT_SECRET};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const API_KEY: &str = "gateway-test-key";

pub struct Gateway {
    pub port: u16,
    pub base: String,
    stop: Option<oneshot::Sender<()>>,
    done: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Gateway {
    /// Triggers the drain, as SIGTERM does, and waits for the node to stop.
    pub async fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(done) = self.done.take() {
            tokio::time::timeout(Duration::from_secs(20), done)
                .await
                .expect("gateway stops within the drain timeout")
                .unwrap()
                .unwrap();
        }
    }

    pub async fn ready(&self) -> (u16, Value) {
        get(&format!("http://127.0.0.1:{}/ready", self.port)).await
    }

    pub async fn connect(&self, user: &str) -> (WsClient, Value) {
        WsClient::connect_as(&self.base, &token(user)).await
    }

    /// One series of the node's `/metrics`.
    pub async fn metric(&self, series: &str) -> u64 {
        let url = format!("http://127.0.0.1:{}/metrics", self.port);
        let mut response = awc::Client::new().get(url).send().await.expect("metrics");
        let body = response.body().await.expect("body");
        notify_testkit::metric(&String::from_utf8_lossy(&body), series)
    }

    /// Local connections the node holds, from `/ready`.
    pub async fn connections(&self) -> u64 {
        self.ready().await.1["connections"].as_u64().unwrap()
    }
}

pub struct Cluster {
    pub db: TestDb,
    pub prefix: String,
    pub redis_url: String,
    /// Seed nodes when the cluster runs on a Redis Cluster, else empty.
    pub redis_cluster_nodes: String,
    pub api: String,
    /// The topic policy of the api and of every gateway started here.
    pub policy: Arc<TopicPolicy>,
}

impl Cluster {
    pub async fn start() -> Cluster {
        Self::start_on(redis_url()).await
    }

    /// An api on a fresh database, publishing to `redis_url`.
    pub async fn start_on(redis_url: String) -> Cluster {
        Self::start_custom(redis_url, |url| url.to_owned()).await
    }

    /// An api and gateways that follow this topic policy (TOML).
    pub async fn with_policy(policy: &str) -> Cluster {
        let policy = Arc::new(TopicPolicy::from_toml(policy).expect("a valid policy"));
        Self::start_full(redis_url(), String::new(), |url| url.to_owned(), policy).await
    }

    /// An api on a fresh database, publishing on a Redis Cluster, with this
    /// topic policy (TOML).
    pub async fn start_on_redis_cluster(nodes: String, policy: &str) -> Cluster {
        let policy = Arc::new(TopicPolicy::from_toml(policy).expect("a valid policy"));
        Self::start_full(redis_url(), nodes, |url| url.to_owned(), policy).await
    }

    /// Like `start_on`, with the api reaching the database through the URL
    /// `api_database` makes of the real one.
    pub async fn start_custom(
        redis_url: String,
        api_database: impl FnOnce(&str) -> String,
    ) -> Cluster {
        Self::start_full(redis_url, String::new(), api_database, Arc::default()).await
    }

    async fn start_full(
        redis_url: String,
        redis_cluster_nodes: String,
        api_database: impl FnOnce(&str) -> String,
        policy: Arc<TopicPolicy>,
    ) -> Cluster {
        notify_service::telemetry::init();
        let db = TestDb::create().await;
        let prefix = format!("{}:", unique("g"));
        let mut config = notify_api::Config::for_tests(
            api_database(&db.url),
            redis_url.clone(),
            jwt(),
            ApiKeys::parse(API_KEY),
            prefix.clone(),
        );
        config.topic_policy = policy.clone();
        config.redis_cluster_nodes = redis_cluster_nodes.clone();
        let app = notify_api::Application::build(config).await.expect("api");
        let api = format!("http://127.0.0.1:{}", app.port());
        tokio::spawn(app.run_until_stopped(std::future::pending()));
        Cluster {
            db,
            prefix,
            redis_url,
            redis_cluster_nodes,
            api,
            policy,
        }
    }

    pub fn gateway_config(&self) -> notify_gateway::Config {
        notify_gateway::Config {
            addr: "127.0.0.1:0".parse().unwrap(),
            node_id: None,
            redis_url: self.redis_url.clone(),
            redis_cluster_nodes: self.redis_cluster_nodes.clone(),
            database_url: self.db.url.clone(),
            jwt: jwt(),
            channel_prefix: self.prefix.clone(),
            allowed_origins: None,
            trusted_proxies: notify_service::client::default_trusted_proxies(),
            limits: Limits {
                auth_timeout: Duration::from_secs(1),
                ..Limits::default()
            },
            topic_policy: self.policy.clone(),
            presence: notify_gateway::config::Presence {
                heartbeat: Duration::from_secs(1),
                ..Default::default()
            },
            connection_log: Default::default(),
            chat: Default::default(),
            drain: Drain {
                timeout: Duration::from_secs(10),
                batch: 2,
                interval: Duration::from_millis(20),
            },
            stats_interval: Duration::from_secs(3600),
            redis_ping_every: Duration::from_secs(15),
            publish_lag: Duration::from_secs(15),
            workers: Some(1),
            database_pool_size: 2,
            socketio_event: notify_protocol::socketio::NotificationEvent::NewNotification,
        }
    }

    pub async fn gateway(&self) -> Gateway {
        self.gateway_with(|_| {}).await
    }

    pub async fn gateway_with(&self, adjust: impl FnOnce(&mut notify_gateway::Config)) -> Gateway {
        let mut config = self.gateway_config();
        adjust(&mut config);
        let app = notify_gateway::Application::build(config)
            .await
            .expect("gateway");
        let port = app.port();
        let (stop, stopped) = oneshot::channel();
        let done = tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        let gateway = Gateway {
            port,
            base: format!("ws://127.0.0.1:{port}"),
            stop: Some(stop),
            done: Some(done),
        };
        notify_testkit::eventually("gateway ready", Duration::from_secs(10), || async {
            gateway.ready().await.0 == 200
        })
        .await;
        gateway
    }

    /// Sends one notification to each recipient through the api; returns ids.
    pub async fn notify(&self, recipients: &[&str], message: &str) -> Vec<u64> {
        let body = json!({"recipients": recipients, "title": "t", "message": message});
        self.send_raw(&body.to_string()).await
    }

    /// Posts a `/v1/notifications` body as is; returns ids.
    pub async fn send_raw(&self, body: &str) -> Vec<u64> {
        let mut response = awc::Client::new()
            .post(format!("{}/v1/notifications", self.api))
            .insert_header(("x-api-key", API_KEY))
            .insert_header(("content-type", "application/json"))
            .send_body(body.to_owned())
            .await
            .expect("post notification");
        let reply: Value = response.json().await.expect("json reply");
        assert_eq!(response.status().as_u16(), 202, "{reply}");
        serde_json::from_value(reply["ids"].clone()).unwrap()
    }

    /// A server's request to the api with the API key: status and JSON
    /// reply (null when not JSON).
    pub async fn as_server(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.api_request(method, path, ("x-api-key", API_KEY.to_owned()), body)
            .await
    }

    /// A user's request to the api with their token.
    pub async fn as_user(&self, user: &str, method: &str, path: &str) -> (u16, Value) {
        self.as_user_with(user, method, path, None).await
    }

    /// A user's request to the api with their token and a JSON body.
    pub async fn as_user_with(
        &self,
        user: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let bearer = format!("Bearer {}", notify_testkit::token(user));
        self.api_request(method, path, ("authorization", bearer), body)
            .await
    }

    async fn api_request(
        &self,
        method: &str,
        path: &str,
        header: (&str, String),
        body: Option<Value>,
    ) -> (u16, Value) {
        let client = awc::Client::new();
        let url = format!("{}{path}", self.api);
        let request = match method {
            "POST" => client.post(url),
            "DELETE" => client.delete(url),
            "PUT" => client.put(url),
            "PATCH" => client.patch(url),
            _ => client.get(url),
        }
        .insert_header(header);
        let mut response = match body {
            Some(body) => request.send_json(&body).await,
            None => request.send().await,
        }
        .expect("api answers");
        let bytes = response.body().await.expect("body");
        (
            response.status().as_u16(),
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// Redis channels of this test that have at least one subscriber.
    pub async fn subscribed_channels(&self) -> Vec<String> {
        let client = redis::Client::open(self.redis_url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let mut channels: Vec<String> = redis::cmd("PUBSUB")
            .arg("CHANNELS")
            .arg(format!("{}user:*", self.prefix))
            .query_async(&mut conn)
            .await
            .unwrap();
        channels.sort();
        channels
    }
}

pub fn jwt() -> JwtConfig {
    JwtConfig::hs256(JWT_SECRET)
}

/// GETs `url`; status 0 when nothing answers.
pub async fn get(url: &str) -> (u16, Value) {
    let Ok(mut response) = awc::Client::new().get(url).send().await else {
        return (0, Value::Null);
    };
    let body = response.body().await.expect("body");
    (
        response.status().as_u16(),
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}
