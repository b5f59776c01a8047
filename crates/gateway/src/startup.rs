//! Building, running and draining a gateway node.
//!
//! [`Application::build`] binds its own listener (tests pass port 0).
//! [`Application::run_until_stopped`] serves until the shutdown future
//! resolves, then drains: stop accepting, close connections with 1012 in
//! small batches so clients reconnect elsewhere without a stampede,
//! unsubscribe, and exit within the drain timeout.

use std::future::Future;
use std::net::TcpListener;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use anyhow::Context;
use governor::{Quota, RateLimiter};
use notify_auth::JwtVerifier;
use notify_bus::{NodeStore, PresenceStore, Publisher, QueueLimits, SessionStore, TokenGate};
use notify_chat::{Chat, ChatTasks};
use notify_protocol::ChannelNames;
use notify_service::refusals::count_refusals;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::acks::Acks;
use crate::broker::Broker;
use crate::config::{Config, Drain};
use crate::journal::Journal;
use crate::liveness::Liveness;
use crate::node::Node;
use crate::presence::Presence;
use crate::registry::Registry;
use crate::routes;
use crate::send_queue::CloseSignal;
use crate::sessions::Sessions;
use crate::subscriber::{Subscriber, SubscriberStatus};
use crate::topics::Topics;

/// Longest wait at exit for queued acks and read marks to be written.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Application {
    port: u16,
    node: Arc<Node>,
    server: Server,
    subscriber: JoinHandle<()>,
    /// Keeps the node's sessions and presence in Redis until shutdown,
    /// then removes them.
    liveness_task: JoinHandle<()>,
    /// Writes connection log rows; finishes what is queued at exit.
    journal_task: Option<JoinHandle<()>>,
    stats: JoinHandle<()>,
    /// Writers that must finish what is queued before the process exits:
    /// delivery acks, and read marks waiting to be published.
    acks_task: JoinHandle<()>,
    /// The chat message writer and offline notices, closed before the
    /// publisher so that what they queue is published.
    chat_tasks: ChatTasks,
    publisher_task: JoinHandle<()>,
    /// Deletes the outbox rows of published offline notices; ends after
    /// the publisher.
    forget_published: JoinHandle<()>,
    stop_subscriber: watch::Sender<bool>,
    drain: Drain,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let listener =
            TcpListener::bind(config.addr).with_context(|| format!("binding {}", config.addr))?;
        let port = listener.local_addr()?.port();
        let node_id = config
            .node_id
            .clone()
            .unwrap_or_else(|| format!("{}:{port}", host_name()));

        let db = notify_store::build_pool(&config.database_url, config.database_pool_size)
            .context("building the MySQL pool")?;
        let (acks, acks_task) = Acks::start(db.clone());
        let redis =
            notify_bus::build_pool(&config.redis_target()).context("building the Redis pool")?;
        // Offline chat notices are new notifications: their outbox rows are
        // deleted once published, as the api does.
        let (published_tx, published_rx) = tokio::sync::mpsc::channel(256);
        let (publisher, publisher_task) = Publisher::start_reporting(
            redis.clone(),
            QueueLimits::new(4096, 16 << 20),
            Some(published_tx),
        );
        let forget_published = tokio::spawn(notify_store::unpublished::forget_published(
            db.clone(),
            published_rx,
        ));
        let broker = Broker::new(&config.redis_target()).context("configuring Redis")?;
        let registry = Registry::new(config.limits.queue_frames, config.limits.queue_bytes);
        let topics = Arc::new(Topics::new(
            registry.interest().clone(),
            config.limits.queue_frames,
            config.limits.queue_bytes,
        ));
        let channels = ChannelNames::new(config.channel_prefix.clone());
        let status = Arc::new(SubscriberStatus::default());
        let publish_lag =
            chrono::TimeDelta::from_std(config.publish_lag).unwrap_or(chrono::TimeDelta::MAX);
        let (stop_subscriber, stop_rx) = watch::channel(false);
        let subscriber = tokio::spawn(
            Subscriber {
                broker,
                registry: registry.clone(),
                topics: topics.clone(),
                channels: channels.clone(),
                status: status.clone(),
                ping_every: config.redis_ping_every,
                publish_lag,
            }
            .run(stop_rx),
        );

        let jwt = JwtVerifier::new(&config.jwt).map_err(anyhow::Error::msg)?;
        // Fetch a JWKS now so the first users do not wait for it; a provider
        // that is down is asked again when a token needs it.
        if let Err(error) = jwt.prefetch().await {
            tracing::warn!(%error, "could not fetch the JWKS yet");
        }
        let instance = format!("{node_id}#{:016x}", rand::random::<u64>());
        let presence = config.topic_policy.any_presence().then(|| {
            Arc::new(Presence::new(
                PresenceStore::new(channels.clone(), redis.publish_command()),
                config.presence.grace,
            ))
        });
        let sessions = Arc::new(Sessions::new(SessionStore::new(channels.clone())));
        let liveness = Arc::new(Liveness {
            instance: instance.clone(),
            nodes: NodeStore::new(channels.clone(), redis.publish_command()),
            pool: redis.clone(),
            heartbeat: config.presence.heartbeat,
            sessions: sessions.clone(),
            presence: presence.clone(),
            failures: Default::default(),
        });
        let liveness_task = tokio::spawn(liveness.clone().run(stop_subscriber.subscribe()));
        let (journal, journal_task) = Journal::start(
            node_id.clone(),
            instance.clone(),
            db.clone(),
            sessions,
            config.connection_log.queue,
            config.connection_log.enabled,
        );
        let (chat, chat_tasks) = Chat::start(
            db.clone(),
            redis.clone(),
            publisher.clone(),
            channels.clone(),
            &config.chat,
        );
        let node = Arc::new(Node {
            id: node_id,
            instance,
            journal,
            liveness,
            registry,
            topics,
            policy: config.topic_policy.clone(),
            presence,
            redis: redis.clone(),
            gate: TokenGate::new(jwt, redis, channels.clone()),
            db,
            publisher,
            chat,
            channels,
            limits: config.limits.clone(),
            socketio_event: config.socketio_event,
            allowed_origins: config.allowed_origins.clone(),
            subscriber: status,
            draining: AtomicBool::new(false),
            acks,
            open: AtomicUsize::new(0),
            connects: RateLimiter::keyed(
                Quota::per_second(
                    NonZeroU32::new(config.limits.connect_rate.max(1)).unwrap_or(NonZeroU32::MIN),
                )
                .allow_burst(
                    NonZeroU32::new(config.limits.connect_burst.max(1)).unwrap_or(NonZeroU32::MIN),
                ),
            ),
            trusted_proxies: config.trusted_proxies.clone(),
            backfills: tokio::sync::Semaphore::new(config.database_pool_size.max(1)),
            publish_lag,
            refusals: Arc::default(),
            closes: Default::default(),
        });
        let stats = tokio::spawn(log_stats(node.clone(), config.stats_interval));

        let data = web::Data::from(node.clone());
        let refusals = web::Data::from(node.refusals.clone());
        let mut server = HttpServer::new(move || {
            App::new()
                .wrap(notify_service::http::security_headers())
                .wrap(from_fn(count_refusals))
                .app_data(data.clone())
                .app_data(refusals.clone())
                .configure(routes::configure)
                .default_service(web::to(|| async {
                    routes::error(
                        actix_web::http::StatusCode::NOT_FOUND,
                        "not_found",
                        "no such route",
                    )
                }))
        })
        .client_request_timeout(notify_service::http::REQUEST_HEAD_TIMEOUT)
        // Shutdown is ours to run (see `run_until_stopped`).
        .disable_signals()
        .shutdown_timeout(1);
        if let Some(workers) = config.workers {
            server = server.workers(workers);
        }
        let server = server.listen(listener)?.run();
        Ok(Self {
            port,
            node,
            server,
            subscriber,
            liveness_task,
            journal_task,
            stats,
            acks_task,
            chat_tasks,
            publisher_task,
            forget_published,
            stop_subscriber,
            drain: config.drain,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn node_id(&self) -> &str {
        &self.node.id
    }

    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let mut server = tokio::spawn(self.server);
        let served = tokio::select! {
            result = &mut server => Some(result),
            _ = shutdown => None,
        };
        let deadline = tokio::time::Instant::now() + self.drain.timeout;
        if served.is_none() {
            tracing::info!("draining");
            drain(&self.node, &handle, &self.drain, deadline).await;
        }
        self.stop_subscriber.send_replace(true);
        let _ = tokio::time::timeout_at(deadline + Duration::from_secs(1), self.subscriber).await;

        self.stats.abort();
        let served = match served {
            Some(result) => result,
            None => {
                handle.stop(false).await;
                server.await
            }
        };
        // The connections are gone: write what they left queued, and take
        // the node's sessions and presence out of Redis.
        self.node.acks.close();
        self.node.journal.close();
        let node = self.node.clone();
        let flushed = async {
            self.chat_tasks.close().await;
            node.publisher.close();
            let _ = self.acks_task.await;
            let _ = self.publisher_task.await;
            let _ = self.forget_published.await;
            if let Some(task) = self.journal_task {
                let _ = task.await;
            }
            let _ = self.liveness_task.await;
        };
        if tokio::time::timeout(FLUSH_TIMEOUT, flushed).await.is_err() {
            tracing::warn!(
                "gave up waiting for queued acks, read marks and connection log rows to be written"
            );
        }
        tracing::info!("stopped");
        Ok(served??)
    }
}

async fn drain(node: &Node, handle: &ServerHandle, drain: &Drain, deadline: tokio::time::Instant) {
    node.draining.store(true, Ordering::Relaxed);
    handle.pause().await;
    let queues = node.registry.queues();
    let total = queues.len();
    for batch in queues.chunks(drain.batch) {
        for queue in batch {
            queue.close(CloseSignal::Restart);
        }
        if tokio::time::Instant::now() + drain.interval >= deadline {
            break;
        }
        tokio::time::sleep(drain.interval).await;
    }
    // Close whatever the deadline cut short, all at once.
    for queue in node.registry.queues() {
        queue.close(CloseSignal::Restart);
    }
    while node.registry.counts().0 > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (left, _) = node.registry.counts();
    tracing::info!(
        closed = total - left.min(total),
        left,
        "connections drained"
    );
}

async fn log_stats(node: Arc<Node>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        // Keyed limiters keep an entry per address ever seen: drop the idle.
        node.connects.retain_recent();
        node.connects.shrink_to_fit();
        let (connections, users) = node.registry.counts();
        tracing::info!(
            node = %node.id,
            connections,
            users,
            redis = node.subscriber.connected.load(Ordering::Relaxed),
            events_received = node.subscriber.received.load(Ordering::Relaxed),
            topics = node.topics.subscriptions(0).0,
            connection_log_dropped = node.journal.stats.dropped.load(Ordering::Relaxed),
            refusals = %node.refusals.summary(),
            closes = %node.closes.summary(),
            "gateway stats"
        );
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "gateway".into())
}
