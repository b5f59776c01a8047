//! Whether users are online, for servers choosing another channel (email,
//! push) for those who are not: `GET /v1/users/{id}/presence` and
//! `POST /v1/presence` with up to 1,000 users, each answered from Redis in
//! one round trip.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::DateTime;
use notify_auth::jwt::valid_user_id;
use notify_bus::UserPresence;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::redis_call;
use crate::auth::require_api_key;
use crate::body;
use crate::error::ApiError;
use crate::state::AppState;
use crate::validation::user_list;

/// Room for 1,000 of the longest user ids (191 characters of up to 4
/// bytes each), quoted and separated.
const MAX_PRESENCE_BODY_BYTES: usize = 1024 * 1024;

/// `GET /v1/users/{id}/presence`.
pub async fn one(
    req: HttpRequest,
    user: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_api_key(&req, &state)?;
    let user = user.into_inner();
    if !valid_user_id(&user) {
        return Err(ApiError::InvalidField("not a valid user id".into()));
    }
    let found = lookup(&state, &[user.as_str()]).await?;
    let presence = found.into_iter().next().map_or(Value::Null, describe);
    Ok(HttpResponse::Ok().json(presence))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Users {
    users: Vec<String>,
}

/// `POST /v1/presence` `{"users": [...]}` → `{"users": {id: presence}}`.
pub async fn many(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    require_api_key(&req, &state)?;
    let raw = body::read(&req, payload, MAX_PRESENCE_BODY_BYTES).await?;
    let Users { users } = body::parse_json(&raw)?;
    let unique = user_list(&users)?;
    let found = lookup(&state, &unique).await?;
    let map: Map<String, Value> = unique
        .iter()
        .zip(found)
        .map(|(user, presence)| (user.to_string(), describe(presence)))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "users": map })))
}

async fn lookup(state: &AppState, users: &[&str]) -> Result<Vec<UserPresence>, ApiError> {
    redis_call(state, "read presence", async |mut conn| {
        state.sessions.presence(&mut conn, users).await
    })
    .await
}

/// `{"online", "connections", "last_seen_at"}`: an online user was seen
/// now; otherwise when their last connection ended, if that is known.
fn describe(presence: UserPresence) -> Value {
    let online = presence.connections > 0;
    let last_seen = if online {
        Some(chrono::Utc::now())
    } else {
        presence
            .last_seen
            .and_then(|secs| DateTime::from_timestamp(i64::try_from(secs).ok()?, 0))
    };
    json!({
        "online": online,
        "connections": presence.connections,
        "last_seen_at": last_seen.map(|at| notify_protocol::event::format_timestamp(&at)),
    })
}
