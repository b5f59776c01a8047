//! HTTP side of a gateway node: the WebSocket upgrade and health checks.

use std::sync::atomic::Ordering;

use governor::clock::Clock;

use actix_web::http::{header, StatusCode};
use actix_web::{rt, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use crate::connection::{self, Admission};
use crate::journal::{Attempt, Peer};
use notify_bus::TokenRefusal;

use crate::node::{Node, OpenSocket};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/ws", web::get().to(upgrade))
        .route("/socket.io/", web::get().to(upgrade_socketio))
        .route("/socket.io", web::get().to(upgrade_socketio))
        .route("/health", web::get().to(notify_service::http::health))
        .route("/ready", web::get().to(ready))
        .route("/metrics", web::get().to(metrics));
}

/// A refusal before the upgrade, marked so that it is counted.
pub fn error(status: StatusCode, code: &'static str, message: &str) -> HttpResponse {
    notify_service::http::refusal(HttpResponse::build(status), code, message)
}

#[derive(Deserialize)]
struct ConnectQuery {
    token: Option<String>,
    after: Option<String>,
}

/// The query of a Socket.IO client's upgrade.
#[derive(Deserialize)]
struct SocketIoQuery {
    #[serde(rename = "EIO")]
    eio: Option<String>,
    transport: Option<String>,
    sid: Option<String>,
    token: Option<String>,
}

/// Which protocol a connection speaks, by its path.
#[derive(Clone, Copy)]
enum Path {
    Native,
    SocketIo,
}

/// `GET /ws`, recording a refused attempt in the connection log.
async fn upgrade(req: HttpRequest, body: web::Payload, node: web::Data<Node>) -> HttpResponse {
    upgrade_on(Path::Native, req, body, node).await
}

/// `GET /socket.io/?EIO=4&transport=websocket`: Socket.IO clients.
async fn upgrade_socketio(
    req: HttpRequest,
    body: web::Payload,
    node: web::Data<Node>,
) -> HttpResponse {
    upgrade_on(Path::SocketIo, req, body, node).await
}

async fn upgrade_on(
    path: Path,
    req: HttpRequest,
    body: web::Payload,
    node: web::Data<Node>,
) -> HttpResponse {
    let peer = Peer {
        address: Some(notify_service::client::client_addr(&req, &node.trusted_proxies).to_string()),
        user_agent: req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|ua| ua.to_str().ok())
            .map(str::to_owned),
    };
    let response = accept(path, req, body, node.clone(), &peer).await;
    if let Some(code) = notify_service::refusals::code_of(&response) {
        let attempt = Attempt::new(Box::new(peer));
        node.journal
            .refused_upgrade(&attempt, code, response.status().as_u16());
    }
    response
}

/// Checks origin and any token given with the upgrade, then hands the
/// socket to its own task. Failures before the upgrade are plain HTTP
/// errors; a client with no token gets `auth_timeout` to send an `auth`
/// frame.
async fn accept(
    path: Path,
    req: HttpRequest,
    body: web::Payload,
    node: web::Data<Node>,
    peer: &Peer,
) -> HttpResponse {
    if node.is_draining() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "node is shutting down, connect to another",
        );
    }
    if node.open.load(Ordering::Relaxed) >= node.limits.max_connections {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "node_full",
            "node is full, connect to another",
        );
    }
    {
        let addr = notify_service::client::client_addr(&req, &node.trusted_proxies);
        if let Err(not_until) = node.connects.check_key(&addr) {
            let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
            let mut response = error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many new connections, slow down",
            );
            if let Ok(value) = header::HeaderValue::from_str(&(wait.as_secs() + 1).to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            return response;
        }
    }
    if let Some(allowed) = &node.allowed_origins {
        let origin = req
            .headers()
            .get(header::ORIGIN)
            .and_then(|o| o.to_str().ok());
        // Server-side clients send no Origin; browsers always do.
        if let Some(origin) = origin {
            if !allowed.iter().any(|a| a == origin.trim_end_matches('/')) {
                return error(
                    StatusCode::FORBIDDEN,
                    "origin_not_allowed",
                    "origin not allowed",
                );
            }
        }
    }
    let admission = match path {
        Path::Native => match native_admission(&req, &node).await {
            Ok(admission) => admission,
            Err(refusal) => return refusal,
        },
        Path::SocketIo => match socketio_admission(&req, &node) {
            Ok(admission) => admission,
            Err(refusal) => return *refusal,
        },
    };
    let (response, session, stream) = match actix_ws::handle(&req, body) {
        Ok(parts) => parts,
        Err(e) => return error(StatusCode::BAD_REQUEST, "not_websocket", &e.to_string()),
    };
    let limit = node.limits.max_frame_bytes;
    let stream = stream
        .max_frame_size(limit)
        .aggregate_continuations()
        .max_continuation_size(limit);
    // The message stream is not Send: the task stays on this worker thread.
    let open = OpenSocket::new(node.into_inner());
    rt::spawn(connection::run(
        open,
        session,
        stream,
        admission,
        Attempt::new(Box::new(peer.clone())),
    ));
    response
}

/// `/ws`: the token of the header or the query is checked before the
/// upgrade (none: the client authenticates with its first frame).
async fn native_admission(req: &HttpRequest, node: &Node) -> Result<Admission, HttpResponse> {
    let query = web::Query::<ConnectQuery>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .unwrap_or(ConnectQuery {
            token: None,
            after: None,
        });
    let after = match query.after.as_deref().map(str::parse::<u64>) {
        None => None,
        Some(Ok(after)) => Some(after),
        Some(Err(_)) => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                "after must be a notification id",
            ))
        }
    };
    let token = upgrade_token(req, query.token);
    let claims = match token {
        None => None,
        Some(token) => match node.gate.admit(&token).await {
            Ok(claims) => Some(claims),
            Err(refusal) => return Err(refused(refusal)),
        },
    };
    if let Some(claims) = &claims {
        if node.registry.user_connections(&claims.sub) >= node.limits.max_connections_per_user {
            return Err(error(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_connections",
                "too many connections for this user",
            ));
        }
    }
    Ok(Admission::Native {
        claims: claims.map(Box::new),
        after,
    })
}

/// `/socket.io/`: Engine.IO 4 over the WebSocket transport. HTTP
/// long-polling is refused (400 `transport_unsupported`): clients connect
/// with `transports: ["websocket"]`. A token given with the upgrade is
/// checked at the CONNECT packet, so a refusal reaches the client as a
/// CONNECT_ERROR it can read.
// The refusal boxed: it is built only when refusing.
fn socketio_admission(req: &HttpRequest, node: &Node) -> Result<Admission, Box<HttpResponse>> {
    let query = web::Query::<SocketIoQuery>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|_| {
            error(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                "invalid query string",
            )
        })?;
    if query.eio.as_deref() != Some("4") {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "unsupported_protocol_version",
            "Engine.IO 4 only (socket.io-client 3 or 4): EIO=4",
        )));
    }
    if query.transport.as_deref() != Some("websocket") || query.sid.is_some() {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "transport_unsupported",
            "this server speaks the websocket transport only: connect with transports: [\"websocket\"]",
        )));
    }
    let token = upgrade_token(req, query.token);
    Ok(Admission::SocketIo {
        upgrade_token: token.map(String::into_boxed_str),
        notification_event: node.socketio_event,
    })
}

/// The token given with an upgrade: the `Authorization` header, or else
/// the `token` query parameter (browsers cannot set headers).
fn upgrade_token(req: &HttpRequest, from_query: Option<String>) -> Option<String> {
    notify_service::http::bearer(req.headers())
        .map(str::to_owned)
        .or(from_query)
}

fn refused(refusal: TokenRefusal) -> HttpResponse {
    unauthorized(refusal.code(), refusal.message())
}

fn unauthorized(code: &'static str, message: &str) -> HttpResponse {
    let mut response = error(StatusCode::UNAUTHORIZED, code, message);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    response
}

/// Ready while the Redis subscriber is connected and the node is not
/// draining.
async fn ready(node: web::Data<Node>) -> HttpResponse {
    let redis = node.subscriber.connected.load(Ordering::Relaxed);
    let draining = node.is_draining();
    let (connections, users) = node.registry.counts();
    let body = json!({
        "status": if redis && !draining { "ready" } else { "unavailable" },
        "node": node.id,
        "redis": if redis { "up" } else { "down" },
        "draining": draining,
        "connections": connections,
        "users": users,
        "redis_reconnects": node.subscriber.reconnects.load(Ordering::Relaxed),
        "redis_pings": node.subscriber.pings.load(Ordering::Relaxed),
        "redis_resyncs": node.subscriber.resyncs.load(Ordering::Relaxed),
    });
    if redis && !draining {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Prometheus text: connections, refusals by code, closes by reason.
/// Served to the internal network only: nginx routes `/ws` alone.
/// Topics listed one by one in `/metrics`, the most subscribed first: a
/// node may hold a great many small topics.
const LISTED_TOPICS: usize = 1000;

async fn metrics(node: web::Data<Node>) -> HttpResponse {
    use notify_service::refusals::prometheus_value;
    let (connections, users) = node.registry.counts();
    let (topics, subscriptions) = node.topics.subscriptions(LISTED_TOPICS);
    let mut body = String::new();
    for (metric, kind, help, value) in [
        (
            "notify_gateway_connections",
            "gauge",
            "Authenticated connections on this node.",
            connections as u64,
        ),
        (
            "notify_gateway_users",
            "gauge",
            "Distinct users connected to this node.",
            users as u64,
        ),
        (
            "notify_gateway_open_sockets",
            "gauge",
            "Sockets open on this node, authenticated or not.",
            node.open.load(Ordering::Relaxed) as u64,
        ),
        (
            "notify_gateway_events_received_total",
            "counter",
            "Events received from Redis.",
            node.subscriber.received.load(Ordering::Relaxed),
        ),
        (
            "notify_gateway_redis_reconnects_total",
            "counter",
            "Reconnections of the Redis subscriber.",
            node.subscriber.reconnects.load(Ordering::Relaxed),
        ),
        (
            "notify_gateway_broadcasts_received_total",
            "counter",
            "Topic, role and everyone events received from Redis.",
            node.subscriber.broadcasts.load(Ordering::Relaxed),
        ),
        (
            "notify_gateway_topics",
            "gauge",
            "Topics with at least one subscriber on this node.",
            topics as u64,
        ),
        (
            "notify_gateway_liveness_failures_total",
            "counter",
            "Heartbeats and session or presence updates Redis did not take (retried).",
            node.liveness.failures.load(Ordering::Relaxed),
        ),
        (
            "notify_gateway_connection_log_written_total",
            "counter",
            "Connection log rows written to MySQL.",
            node.journal.stats.written.load(Ordering::Relaxed),
        ),
        (
            "notify_gateway_connection_log_dropped_total",
            "counter",
            "Connection log rows dropped (queue full or MySQL unavailable).",
            node.journal.stats.dropped.load(Ordering::Relaxed),
        ),
    ] {
        body.push_str(&prometheus_value(metric, kind, help, value));
    }
    body.push_str(
        "# HELP notify_gateway_topic_subscriptions Connections on this node subscribed to a topic (the 1,000 largest topics).\n\
         # TYPE notify_gateway_topic_subscriptions gauge\n",
    );
    for (topic, count) in subscriptions {
        // Topic names are plain ASCII without quotes or backslashes.
        body.push_str(&format!(
            "notify_gateway_topic_subscriptions{{topic=\"{topic}\"}} {count}\n"
        ));
    }
    body.push_str(&node.refusals.prometheus(
        "notify_gateway_refusals_total",
        "code",
        "Upgrades and frames refused, by error code.",
    ));
    body.push_str(&node.closes.prometheus(
        "notify_gateway_closes_total",
        "reason",
        "Connections closed by the node, by close reason.",
    ));
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(body)
}
