//! HTTP routes of the api.

pub mod events;
pub mod feed;
pub mod health;
pub mod revoke;
pub mod send;
pub mod status;

use actix_web::{error::InternalError, web, HttpResponse};

use crate::error::ApiError;

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
        .route("/api/notifications/{id}", web::delete().to(feed::delete));
}

/// Unknown paths get the same JSON error shape as everything else.
pub async fn not_found() -> Result<HttpResponse, InternalError<&'static str>> {
    let response = HttpResponse::NotFound()
        .json(serde_json::json!({"error": {"code": "not_found", "message": "no such route"}}));
    Ok(notify_service::refusals::mark(response, "not_found"))
}
