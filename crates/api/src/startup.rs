//! Building and running the api server.
//!
//! [`Application::build`] binds its own listener, so tests pass port 0 and
//! read back the port the OS chose.

use notify_chat::{Chat, ChatTasks};
use std::future::Future;
use std::net::TcpListener;
use std::sync::atomic::Ordering;
use std::time::Duration;

use actix_cors::Cors;
use actix_web::dev::Server;
use actix_web::dev::ServiceResponse;
use actix_web::http::header;
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::{from_fn, Condition, ErrorHandlerResponse, ErrorHandlers};
use actix_web::{web, App, HttpServer, ResponseError};
use anyhow::Context;
use notify_auth::JwtVerifier;
use notify_bus::{Publisher, QueueLimits, TokenGate};
use notify_protocol::ChannelNames;
use notify_service::refusals::count_refusals;
use notify_store::StatementLimit;
use tokio::task::JoinHandle;

use crate::batcher::Batcher;
use crate::config::Config;
use crate::housekeeping;
use crate::limits::RateLimits;
use crate::reads::FeedReads;
use crate::routes;
use crate::state::AppState;
use crate::sweeper;

/// Events that may wait for Redis before new ones are dropped (they stay in
/// MySQL either way, and new notifications in the outbox).
const PUBLISH_QUEUE: QueueLimits = QueueLimits {
    entries: 65_536,
    bytes: 64 << 20,
};

/// Longest wait at exit for queued events to reach Redis.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Application {
    port: u16,
    server: Server,
    /// Closed at exit, so that it publishes what is queued and ends.
    publisher: Publisher,
    publisher_task: JoinHandle<()>,
    /// Deletes the outbox rows of what the publisher reports published; ends
    /// after the publisher.
    forget_published: JoinHandle<()>,
    /// The chat message writer and offline notices, closed before the
    /// publisher so that what they queue is published.
    chat_tasks: ChatTasks,
    /// Periodic tasks (sweep, housekeeping), stopped once the server is.
    background: Vec<JoinHandle<()>>,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let dev_tokens = routes::dev::DevTokens::new(config.dev_tokens, &config.jwt)?;
        let applied = notify_store::migrate::run_pending(&config.database_url)
            .await
            .context("running database migrations")?;
        if applied > 0 {
            tracing::info!(applied, "database migrations applied");
        }
        let db = notify_store::build_pool(&config.database_url, config.database_pool_size)
            .context("building the MySQL pool")?;
        let statements = {
            let mut conn = notify_store::pool::get(&db)
                .await
                .context("connecting to MySQL")?;
            notify_store::notification::check_server(&mut conn)
                .await
                .context("checking MySQL settings")?;
            StatementLimit::of_server(&mut conn)
                .await
                .context("reading MySQL's max_allowed_packet")?
        };
        let redis =
            notify_bus::build_pool(&config.redis_target()).context("building the Redis pool")?;
        let publish_command = redis.publish_command();
        let (published_tx, published_rx) = tokio::sync::mpsc::channel(1024);
        let (publisher, publisher_task) =
            Publisher::start_reporting(redis.clone(), PUBLISH_QUEUE, Some(published_tx));
        let publisher_handle = publisher.clone();
        let channels = ChannelNames::new(config.channel_prefix.clone());
        let forget_published = tokio::spawn(notify_store::unpublished::forget_published(
            db.clone(),
            published_rx,
        ));
        let sweeper = tokio::spawn(sweeper::sweep(
            db.clone(),
            redis.clone(),
            channels.clone(),
            sweeper::Settings {
                every: config.sweep_every,
                min_age: config.sweep_min_age,
            },
        ));
        let batcher = Batcher::start(
            db.clone(),
            publisher.clone(),
            channels.clone(),
            config.write_concurrency,
            statements,
        );
        let jwt = JwtVerifier::new(&config.jwt).map_err(anyhow::Error::msg)?;
        // Fetch a JWKS now so the first users do not wait for it; a provider
        // that is down is asked again when a token needs it.
        if let Err(error) = jwt.prefetch().await {
            tracing::warn!(%error, "could not fetch the JWKS yet");
        }
        let gate = TokenGate::new(jwt, redis.clone(), channels.clone());
        let (chat, chat_tasks) = Chat::start(
            db.clone(),
            redis.clone(),
            publisher.clone(),
            channels.clone(),
            &config.chat,
        );
        let (reads, replica_watch) = match &config.database_read_url {
            Some(url) => {
                let replica = notify_store::build_pool(url, config.database_pool_size)
                    .context("building the read replica's MySQL pool")?;
                let (reads, task) =
                    FeedReads::with_replica(db.clone(), replica, config.database_read_max_lag);
                (reads, Some(task))
            }
            None => (FeedReads::primary_only(), None),
        };
        let state = web::Data::new(AppState {
            gate,
            reads,
            db,
            batcher,
            redis,
            publisher,
            channels: channels.clone(),
            api_keys: config.api_keys.clone(),
            webhook_secrets: config.webhook_secrets.clone(),
            limits: RateLimits::new(config.per_key, config.per_user, config.credential_failures),
            trusted_proxies: config.trusted_proxies.clone(),
            refusals: Default::default(),
            policy: config.topic_policy.clone(),
            presence: notify_bus::PresenceStore::new(channels.clone(), publish_command),
            sessions: notify_bus::SessionStore::new(channels.clone()),
            nodes: notify_bus::NodeStore::new(channels.clone(), publish_command),
            chat,
            dev_tokens,
        });
        let kept = state.clone();
        let (retention, keep_every) = (config.connection_log_retention, config.node_sweep_every);
        let keeper = tokio::spawn(async move {
            let mut tick = tokio::time::interval(keep_every);
            let mut purged_at = tokio::time::Instant::now();
            loop {
                tick.tick().await;
                housekeeping::close_lost_connections(&kept).await;
                if purged_at.elapsed() >= Duration::from_secs(60) {
                    purged_at = tokio::time::Instant::now();
                    housekeeping::purge_connection_logs(&kept.db, retention).await;
                }
            }
        });
        let pruned = state.clone();
        let pruner = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                pruned.limits.prune();
                match housekeeping::purge_idempotency_keys(&pruned.db).await {
                    Ok(0) => {}
                    Ok(purged) => tracing::info!(purged, "purged expired idempotency keys"),
                    Err(error) => tracing::warn!(%error, "could not purge idempotency keys"),
                }
                let stats = pruned.publisher.stats();
                tracing::info!(
                    published = stats.published.load(Ordering::Relaxed),
                    retried = stats.retried.load(Ordering::Relaxed),
                    failed = stats.failed.load(Ordering::Relaxed),
                    dropped = stats.dropped.load(Ordering::Relaxed),
                    refusals = %pruned.refusals.summary(),
                    "publish stats"
                );
            }
        });

        let listener =
            TcpListener::bind(config.addr).with_context(|| format!("binding {}", config.addr))?;
        let port = listener.local_addr()?.port();
        let cors_origins = config.cors_origins.clone();
        let refusals = web::Data::from(state.refusals.clone());
        let mut server = HttpServer::new(move || {
            App::new()
                .wrap(Condition::new(
                    !cors_origins.is_empty(),
                    cors(&cors_origins),
                ))
                .wrap(ErrorHandlers::new().handler(StatusCode::BAD_REQUEST, cors_refusal))
                .wrap(notify_service::http::security_headers())
                .wrap(from_fn(count_refusals))
                .app_data(state.clone())
                .app_data(refusals.clone())
                .configure(routes::configure)
                .default_service(web::to(routes::not_found))
        })
        .client_request_timeout(notify_service::http::REQUEST_HEAD_TIMEOUT)
        // Shutdown is ours to run (see `run_until_stopped`).
        .disable_signals()
        .shutdown_timeout(10);
        if let Some(workers) = config.workers {
            server = server.workers(workers);
        }
        let server = server.listen(listener)?.run();
        Ok(Self {
            port,
            server,
            publisher: publisher_handle,
            publisher_task,
            forget_published,
            chat_tasks,
            background: [sweeper, pruner, keeper]
                .into_iter()
                .chain(replica_watch)
                .collect(),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `shutdown` resolves, then stops taking requests, lets
    /// the ones in flight finish (their rows committed by the batcher), stops
    /// the periodic tasks, and publishes what is queued before returning.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let mut server = tokio::spawn(self.server);
        let served = tokio::select! {
            result = &mut server => result,
            _ = shutdown => {
                tracing::info!("stopping");
                handle.stop(true).await;
                server.await
            }
        };
        for task in self.background {
            task.abort();
            let _ = task.await;
        }
        let flushed = async {
            self.chat_tasks.close().await;
            self.publisher.close();
            let _ = self.publisher_task.await;
            let _ = self.forget_published.await;
        };
        if tokio::time::timeout(FLUSH_TIMEOUT, flushed).await.is_err() {
            tracing::warn!("gave up waiting for queued events to be published");
        }
        tracing::info!("stopped");
        Ok(served??)
    }
}

/// Browsers on these origins may call the api (the feed endpoints, with a
/// user token); every other origin gets no CORS headers.
/// Browsers enforce CORS; the server only decides which origins get the
/// headers. Requests from other origins are served without them (non-browser
/// clients send any `Origin`), and a refused preflight is answered below.
fn cors(origins: &[String]) -> Cors {
    origins
        .iter()
        .fold(Cors::default(), |cors, origin| cors.allowed_origin(origin))
        .block_on_origin_mismatch(false)
        .allowed_methods(["GET", "POST", "PUT", "PATCH", "DELETE"])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::HeaderName::from_static("idempotency-key"),
        ])
        .max_age(3600)
}

/// actix-cors refuses a preflight with a plain-text 400; give it our JSON
/// error instead. Only preflights: every other 400 is already ours.
fn cors_refusal<B>(res: ServiceResponse<B>) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let request = res.request();
    let preflight = request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if !preflight {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let (request, _) = res.into_parts();
    let response = crate::error::ApiError::CorsRefused.error_response();
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(request, response).map_into_right_body(),
    ))
}
