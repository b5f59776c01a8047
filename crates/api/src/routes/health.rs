//! Liveness and readiness.

use actix_web::{web, HttpResponse};
use diesel_async::RunQueryDsl;
use serde_json::json;

use crate::state::AppState;

/// The process is up and serving HTTP.
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// MySQL and Redis both answer; 503 naming the one that does not.
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let (mysql, redis) = tokio::join!(mysql_up(&state), notify_bus::ping(&state.redis));
    let redis = redis.is_ok();
    let body = json!({
        "status": if mysql && redis { "ready" } else { "unavailable" },
        "mysql": if mysql { "up" } else { "down" },
        "redis": if redis { "up" } else { "down" },
    });
    if mysql && redis {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "2"))
            .json(body)
    }
}

async fn mysql_up(state: &AppState) -> bool {
    let Ok(mut conn) = state.db.get().await else {
        return false;
    };
    diesel::sql_query("SELECT 1")
        .execute(&mut conn)
        .await
        .is_ok()
}
