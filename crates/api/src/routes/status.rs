//! `GET /v1/notifications/{id}`: a sender asks what became of a
//! notification: stored, delivered (a client acknowledged it) or read.
//! Only the API key that sent it may ask; ids are sequential, so to every
//! other key the notification looks exactly like one that does not exist.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::NaiveDateTime;
use notify_protocol::event::format_timestamp;
use notify_store::Notification;
use serde_json::json;

use crate::auth::require_api_key;
use crate::error::ApiError;
use crate::state::AppState;

pub async fn delivery_state(
    req: HttpRequest,
    id: web::Path<u64>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let sender = require_api_key(&req, &state)?;
    let mut conn = notify_store::pool::get(&state.db).await?;
    let found = Notification::delivery_state(&mut conn, id.into_inner(), &sender.0)
        .await?
        .ok_or(ApiError::NotFound)?;
    let stage = if found.read_at.is_some() {
        "read"
    } else if found.delivered_at.is_some() {
        "delivered"
    } else {
        "stored"
    };
    let at = |t: Option<NaiveDateTime>| t.map(|t| format_timestamp(&t.and_utc()));
    Ok(HttpResponse::Ok().json(json!({
        "id": found.id,
        "user_id": found.user_id,
        "state": stage,
        "created_at": format_timestamp(&found.created_at.and_utc()),
        "delivered_at": at(found.delivered_at),
        "read_at": at(found.read_at),
    })))
}
