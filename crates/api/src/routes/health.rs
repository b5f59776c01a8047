//! Liveness, readiness and counters.

use actix_web::{web, HttpResponse};
use diesel_async::RunQueryDsl;
use serde_json::json;

use crate::state::AppState;

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

/// Prometheus text: refusals by code and the publisher's counters. Served
/// to the internal network only: nginx does not route `/metrics`.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    use notify_service::refusals::prometheus_value;
    use std::sync::atomic::Ordering::Relaxed;
    let stats = state.publisher.stats();
    let mut body = state.refusals.prometheus(
        "notify_api_refusals_total",
        "code",
        "Requests answered with an error (refusals, and 5xx failures), by error code.",
    );
    for (metric, help, value) in [
        (
            "notify_api_events_published_total",
            "Events published to Redis.",
            &stats.published,
        ),
        (
            "notify_api_events_retried_total",
            "Event publications retried.",
            &stats.retried,
        ),
        (
            "notify_api_events_failed_total",
            "Events given up after every attempt (left to the sweep).",
            &stats.failed,
        ),
        (
            "notify_api_events_dropped_total",
            "Events dropped because the publish queue was full (left to the sweep).",
            &stats.dropped,
        ),
    ] {
        body.push_str(&prometheus_value(
            metric,
            "counter",
            help,
            value.load(Relaxed),
        ));
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(body)
}
