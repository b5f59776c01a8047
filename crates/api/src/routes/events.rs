//! Ephemeral events (`POST /v1/events`), topic snapshots and presence, for
//! servers (API key or signed webhook). Nothing here touches MySQL: an
//! event is published on Redis before the answer, so `202` means Redis
//! took it.

use actix_web::{web, HttpRequest, HttpResponse};
use notify_protocol::names::valid_topic;
use notify_protocol::topic_event::{event_id, EventAudience, TopicEvent};
use serde_json::value::RawValue;

use crate::auth::Credentials;
use crate::body::{self, MAX_BODY_BYTES};
use crate::error::ApiError;
use crate::state::AppState;
use crate::validation::events::{Audience, CheckedEvent, EventRequest};

use super::redis_call;

pub async fn send(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let credentials = Credentials::from_headers(&req, &state)?;
    credentials.required()?;
    let raw = body::read(&req, payload, MAX_BODY_BYTES).await?;
    let (_sender, once) = credentials.identify(&state, &raw, None)?;
    let request: EventRequest = body::parse_json(&raw)?;
    let checked = request.check()?;
    if let Some(once) = &once {
        once.claim(&state).await?;
    }
    let id = event_id(rand::random());
    let result = publish(&state, &checked, &frame(&checked, &id)).await;
    if let (Err(_), Some(once)) = (&result, &once) {
        once.release(&state).await;
    }
    result?;
    Ok(HttpResponse::Accepted().json(serde_json::json!({ "id": id })))
}

fn frame(checked: &CheckedEvent<'_>, id: &str) -> String {
    let null = RawValue::NULL;
    TopicEvent {
        audience: match &checked.audience {
            Audience::Topic { topic, .. } => EventAudience::Topic(topic),
            Audience::Roles(roles) => EventAudience::Roles(roles),
            Audience::Users(_) | Audience::All => EventAudience::Direct,
        },
        event: checked.event,
        data: checked.data.unwrap_or(null),
        id,
        sent_at: chrono::Utc::now(),
        from: None,
    }
    .to_frame()
}

/// Publishes `frame` to the audience (and retains it, atomically with the
/// publish, when asked).
async fn publish(
    state: &AppState,
    checked: &CheckedEvent<'_>,
    frame: &str,
) -> Result<(), ApiError> {
    let channels = &state.channels;
    let names: Vec<String> = match &checked.audience {
        Audience::Topic { topic, .. } => vec![channels.topic(topic)],
        Audience::Roles(roles) => roles.iter().map(|r| channels.role(r)).collect(),
        Audience::Users(users) => users.iter().map(|u| channels.user(u)).collect(),
        Audience::All => vec![channels.all()],
    };
    let retain = match &checked.audience {
        Audience::Topic {
            topic,
            retain: true,
        } => Some(channels.snapshot(topic)),
        _ => None,
    };
    // A retained event replaces the snapshot and is published in one
    // transaction (the topic's channel and snapshot share a slot). Other
    // events go out as one pipeline (on a cluster one per slot, each tried
    // again on its own), at most 1,000 publishes. A failure that remains
    // answers 503 and may have reached some users: a retry reaches them
    // again under a new id.
    if let Some(key) = &retain {
        return redis_call(state, "publish an event", async |mut conn| {
            let mut pipe = redis::pipe();
            pipe.atomic().set(key, frame).ignore();
            for name in &names {
                state.redis.publish_in(&mut pipe, name, frame).ignore();
            }
            pipe.query_async::<()>(&mut conn).await
        })
        .await;
    }
    redis_call(state, "publish an event", async |_conn| {
        let events = names.iter().map(|name| (name.as_str(), frame));
        notify_bus::publish_now(&state.redis, events)
            .await
            .map_err(|e| redis::RedisError::from((redis::ErrorKind::Io, "publish failed", e)))
    })
    .await
}

/// Checks the credentials of a request without a body, then runs `work`;
/// a signed request whose work fails gets its webhook id back, so its
/// retry is not taken for a replay.
async fn authorised<T>(
    req: &HttpRequest,
    state: &AppState,
    work: impl AsyncFnOnce() -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let credentials = Credentials::from_headers(req, state)?;
    credentials.required()?;
    let (_sender, once) = credentials.identify(state, b"", None)?;
    if let Some(once) = &once {
        once.claim(state).await?;
    }
    let result = work().await;
    if let (Err(_), Some(once)) = (&result, &once) {
        once.release(state).await;
    }
    result
}

fn topic_of(path: &str) -> Result<&str, ApiError> {
    if valid_topic(path) {
        Ok(path)
    } else {
        Err(ApiError::InvalidTopic)
    }
}

/// `DELETE /v1/topics/{topic}/snapshot`: later subscribers get none.
pub async fn clear_snapshot(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorised(&req, &state, async || {
        let key = state.channels.snapshot(topic_of(&path)?);
        redis_call(&state, "clear a snapshot", async |mut conn| {
            redis::cmd("DEL")
                .arg(&key)
                .query_async::<()>(&mut conn)
                .await
        })
        .await
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /v1/topics/{topic}/presence`: who is subscribed, on every node.
pub async fn presence(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let users = authorised(&req, &state, async || {
        let topic = topic_of(&path)?;
        // Placeholder rules belong to one subject; a server asks as nobody.
        if !state.policy.rule(topic, "").presence {
            return Err(ApiError::PresenceDisabled);
        }
        redis_call(&state, "read presence", async |mut conn| {
            state.presence.list(&mut conn, topic).await
        })
        .await
    })
    .await?;
    let topic = path.as_str();
    let count = users.len();
    let users: Vec<serde_json::Value> = users
        .into_iter()
        .map(|(user, connections)| serde_json::json!({"user_id": user, "connections": connections}))
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "topic": topic,
        "users": users,
        "count": count,
    })))
}
