//! A user's live sessions (their JWT): list them on every gateway, and
//! sign one out, or all but the current one. Sessions live in Redis
//! (`notify_bus::sessions`); closing goes to every gateway on the control
//! channel, and the one holding the connection closes it (1008 `session
//! revoked`). Another user's session looks like one that does not exist.

use actix_web::{web, HttpResponse};
use notify_protocol::Control;
use serde::Deserialize;
use serde_json::json;

use super::redis_call;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct Current {
    /// The session making the request, marked `current` in the list.
    session_id: Option<String>,
}

/// `GET /api/sessions?session_id=`: oldest first.
pub async fn list(
    AuthUser(user): AuthUser,
    query: web::Query<Current>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let sessions = redis_call(&state, "list sessions", async |mut conn| {
        // Sessions of gateways that died go first.
        state.nodes.reap(&mut conn).await?;
        state.sessions.list(&mut conn, &user).await
    })
    .await?;
    let current = query.session_id.as_deref();
    let sessions: Vec<serde_json::Value> = sessions
        .into_iter()
        .map(|session| {
            let is_current = current == Some(session.session_id.as_str());
            let mut value = json!(session);
            value["current"] = json!(is_current);
            value
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "sessions": sessions })))
}

/// `DELETE /api/sessions/{session_id}`: closes that connection.
pub async fn close(
    AuthUser(user): AuthUser,
    session: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let session = session.into_inner();
    if !valid_session_id(&session) {
        return Err(ApiError::NotFound);
    }
    let control = Control::CloseSession {
        user: user.clone(),
        session: session.clone(),
    };
    let found = redis_call(&state, "close a session", async |mut conn| {
        if !state.sessions.exists(&mut conn, &user, &session).await? {
            return Ok(false);
        }
        state
            .redis
            .publish_cmd(&state.channels.control(), &control.to_message())
            .query_async::<()>(&mut conn)
            .await?;
        Ok(true)
    })
    .await?;
    if !found {
        return Err(ApiError::NotFound);
    }
    tracing::info!(session, "session closed by its user");
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
pub struct Except {
    except: Option<String>,
}

/// `DELETE /api/sessions?except={session_id}`: closes every other session
/// of the user; answers how many there were.
pub async fn close_others(
    AuthUser(user): AuthUser,
    query: web::Query<Except>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let Some(keep) = query.into_inner().except else {
        return Err(ApiError::InvalidQuery(
            "name the session to keep: ?except={session_id}".into(),
        ));
    };
    if !valid_session_id(&keep) {
        return Err(ApiError::InvalidQuery(
            "except must be a session id (32 hexadecimal digits)".into(),
        ));
    }
    let control = Control::CloseOtherSessions {
        user: user.clone(),
        keep: keep.clone(),
    };
    let closed = redis_call(&state, "close sessions", async |mut conn| {
        let others = state
            .sessions
            .list(&mut conn, &user)
            .await?
            .into_iter()
            .filter(|s| s.session_id != keep)
            .count();
        state
            .redis
            .publish_cmd(&state.channels.control(), &control.to_message())
            .query_async::<()>(&mut conn)
            .await?;
        Ok(others)
    })
    .await?;
    Ok(HttpResponse::Ok().json(json!({ "closed": closed })))
}

/// 32 lowercase hexadecimal digits, as gateways give them.
fn valid_session_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}
