//! Ephemeral events (`POST /v1/events`), topic snapshots and presence, for
//! servers (API key or signed webhook). Nothing here touches MySQL: an
//! event is published on Redis before the answer, so `202` means Redis
//! took it.

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use notify_protocol::names::valid_topic;
use notify_protocol::topic_event::{event_id, EventAudience, TopicEvent};
use serde_json::value::RawValue;

use crate::auth::Credentials;
use crate::body::{self, MAX_BODY_BYTES};
use crate::error::ApiError;
use crate::state::AppState;
use crate::validation::events::{Audience, CheckedEvent, EventRequest};

/// Longest wait for Redis to take an event.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);
/// Commands per pipeline when an event goes to many users.
const PIPELINE: usize = notify_bus::MAX_PIPELINE;

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
    let send = async {
        let mut conn = state.redis.get().await.map_err(|e| e.to_string())?;
        for chunk in names.chunks(PIPELINE) {
            let mut pipe = redis::pipe();
            if let Audience::Topic {
                topic,
                retain: true,
            } = &checked.audience
            {
                pipe.atomic().set(channels.snapshot(topic), frame);
            }
            for name in chunk {
                pipe.publish(name, frame);
            }
            pipe.query_async::<()>(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok::<_, String>(())
    };
    match tokio::time::timeout(PUBLISH_TIMEOUT, send).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => {
            tracing::warn!(%error, "could not publish an event");
            Err(ApiError::Unavailable)
        }
        Err(_) => {
            tracing::warn!("Redis did not take an event in time");
            Err(ApiError::Unavailable)
        }
    }
}

/// Checks the credentials of a request without a body.
async fn authorised(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    let credentials = Credentials::from_headers(req, state)?;
    credentials.required()?;
    let (_sender, once) = credentials.identify(state, b"", None)?;
    if let Some(once) = &once {
        once.claim(state).await?;
    }
    Ok(())
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
    authorised(&req, &state).await?;
    let topic = topic_of(&path)?;
    let clear = async {
        let mut conn = state.redis.get().await.map_err(|e| e.to_string())?;
        redis::cmd("DEL")
            .arg(state.channels.snapshot(topic))
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| e.to_string())
    };
    match tokio::time::timeout(PUBLISH_TIMEOUT, clear).await {
        Ok(Ok(())) => Ok(HttpResponse::NoContent().finish()),
        _ => Err(ApiError::Unavailable),
    }
}

/// `GET /v1/topics/{topic}/presence`: who is subscribed, on every node.
pub async fn presence(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorised(&req, &state).await?;
    let topic = topic_of(&path)?;
    // Placeholder rules belong to one subject; a server asks as nobody.
    if !state.policy.rule(topic, "").presence {
        return Err(ApiError::PresenceDisabled);
    }
    let list = async {
        let mut conn = state.redis.get().await.map_err(|e| e.to_string())?;
        state
            .presence
            .list(&mut conn, topic, notify_bus::presence::now_ms())
            .await
            .map_err(|e| e.to_string())
    };
    let users = match tokio::time::timeout(PUBLISH_TIMEOUT, list).await {
        Ok(Ok(users)) => users,
        Ok(Err(error)) => {
            tracing::warn!(%error, "could not read presence");
            return Err(ApiError::Unavailable);
        }
        Err(_) => return Err(ApiError::Unavailable),
    };
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
