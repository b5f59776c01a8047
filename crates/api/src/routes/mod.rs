//! HTTP routes of the api.

pub mod conversations;
pub mod dev;
pub mod events;
pub mod feed;
pub mod health;
pub mod online;
pub mod revoke;
pub mod send;
pub mod sessions;
pub mod status;

use std::time::Duration;

use actix_web::{error::InternalError, web, HttpResponse};
use notify_bus::RedisConnection;

use crate::error::ApiError;
use crate::state::AppState;

/// Longest wait for Redis to answer one request's calls.
const REDIS_TIMEOUT: Duration = Duration::from_secs(5);

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PathConfig::default().error_handler(|_, _| ApiError::InvalidId.into()))
        .app_data(web::QueryConfig::default().error_handler(|e, _| {
            ApiError::InvalidQuery(format!("invalid query string: {e}")).into()
        }))
        .route("/health", web::get().to(notify_service::http::health))
        .route("/ready", web::get().to(health::ready))
        .route("/metrics", web::get().to(health::metrics))
        .route("/v1/notifications", web::post().to(send::send_many))
        .route(
            "/v1/notifications/{id}",
            web::get().to(status::delivery_state),
        )
        .route("/webhook/notify", web::post().to(send::webhook))
        .route("/v1/events", web::post().to(events::send))
        .route(
            "/v1/topics/{topic}/snapshot",
            web::delete().to(events::clear_snapshot),
        )
        .route(
            "/v1/topics/{topic}/presence",
            web::get().to(events::presence),
        )
        .route(
            "/v1/users/{id}/disconnect",
            web::post().to(revoke::disconnect_user),
        )
        .route("/v1/tokens/revoke", web::post().to(revoke::revoke_token))
        .route("/api/notifications", web::get().to(feed::list))
        .route(
            "/api/notifications/unread-count",
            web::get().to(feed::unread_count),
        )
        .route("/api/notifications/read-all", web::put().to(feed::read_all))
        .route(
            "/api/notifications/{id}/read",
            web::put().to(feed::read_one),
        )
        .route("/api/notifications/{id}", web::delete().to(feed::delete))
        .route("/api/dev/token", web::post().to(dev::token))
        .route("/api/sessions", web::get().to(sessions::list))
        .route("/api/sessions", web::delete().to(sessions::close_others))
        .route("/api/sessions/{session}", web::delete().to(sessions::close))
        .route("/v1/users/{id}/presence", web::get().to(online::one))
        .route("/v1/presence", web::post().to(online::many))
        .route("/api/conversations", web::post().to(conversations::create))
        .route("/api/conversations", web::get().to(conversations::list))
        .route("/api/conversations/{id}", web::get().to(conversations::get))
        .route(
            "/api/conversations/{id}/messages",
            web::get().to(conversations::history),
        )
        .route(
            "/api/conversations/{id}/messages",
            web::post().to(conversations::send),
        )
        .route(
            "/api/conversations/{id}/messages/{message_id}",
            web::patch().to(conversations::edit),
        )
        .route(
            "/api/conversations/{id}/messages/{message_id}",
            web::delete().to(conversations::delete),
        )
        .route(
            "/api/conversations/{id}/read",
            web::put().to(conversations::read),
        )
        .route(
            "/api/conversations/{id}/members",
            web::post().to(conversations::add_members),
        )
        .route(
            "/api/conversations/{id}/members",
            web::delete().to(conversations::remove_members),
        )
        .route(
            "/api/conversations/{id}/members/{user_id}",
            web::delete().to(conversations::remove_member),
        );
}

/// Unknown paths get the same JSON error shape as everything else.
pub async fn not_found() -> Result<HttpResponse, InternalError<&'static str>> {
    let response = HttpResponse::NotFound()
        .json(serde_json::json!({"error": {"code": "not_found", "message": "no such route"}}));
    Ok(notify_service::refusals::mark(response, "not_found"))
}

/// Runs `call` on a pooled Redis connection within [`REDIS_TIMEOUT`]; any
/// failure is logged and answered 503.
pub(crate) async fn redis_call<T>(
    state: &AppState,
    what: &str,
    call: impl AsyncFnOnce(RedisConnection) -> redis::RedisResult<T>,
) -> Result<T, ApiError> {
    let attempt = async {
        let conn = state.redis.get().await.map_err(|e| e.to_string())?;
        call(conn).await.map_err(|e| e.to_string())
    };
    match tokio::time::timeout(REDIS_TIMEOUT, attempt).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => {
            tracing::warn!(%error, "could not {what}");
            Err(ApiError::Unavailable)
        }
        Err(_) => {
            tracing::warn!("Redis did not answer in time to {what}");
            Err(ApiError::Unavailable)
        }
    }
}
