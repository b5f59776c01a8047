//! Chat over HTTP for the signed-in user: conversations, their messages,
//! read marks and group members (see `notify_chat`). A conversation the user
//! is not a member of looks exactly like one that does not exist (404).

use actix_web::{web, HttpRequest, HttpResponse};
use notify_chat::NewConversation;
use notify_protocol::chat::MAX_GROUP_MEMBERS;
use notify_protocol::Draft;
use serde::Deserialize;
use serde_json::json;

use crate::auth::AuthUser;
use crate::body::{self, MAX_BODY_BYTES};
use crate::error::ApiError;
use crate::state::AppState;

pub const DEFAULT_PAGE: u32 = 20;
pub const MAX_PAGE: u32 = 100;
/// A member list of the largest group, with the longest user ids.
const MEMBERS_BODY_BYTES: usize = MAX_GROUP_MEMBERS * (191 * 4 + 3) + 1024;

#[derive(Deserialize)]
pub struct Page {
    before: Option<String>,
    limit: Option<u32>,
}

#[derive(Deserialize)]
pub struct MessagePage {
    before: Option<u64>,
    limit: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Create {
    #[serde(rename = "type")]
    kind: String,
    members: Vec<String>,
    #[serde(default)]
    title: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Edit {
    body: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Read {
    up_to: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Members {
    members: Vec<String>,
}

fn page_size(limit: Option<u32>) -> Result<u32, ApiError> {
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if (1..=MAX_PAGE).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::InvalidQuery(format!(
            "limit must be between 1 and {MAX_PAGE}"
        )))
    }
}

/// 201 for what was created by this request, 200 for what existed (a
/// direct conversation, a message retried with its `client_id`).
fn created_or_found(created: bool) -> actix_web::HttpResponseBuilder {
    if created {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    }
}

/// `POST /api/conversations`: 201 with a new conversation, 200 with the
/// direct conversation that already existed.
pub async fn create(
    AuthUser(user): AuthUser,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let raw = body::read(&req, payload, MEMBERS_BODY_BYTES).await?;
    let Create {
        kind,
        members,
        title,
    } = body::parse_json(&raw)?;
    let new = NewConversation {
        kind,
        members,
        title,
    };
    let (conversation, created) = state.chat.create(&user, &new).await?;
    Ok(created_or_found(created).json(json!({ "conversation": conversation })))
}

/// `GET /api/conversations?before=&limit=`: newest activity first.
pub async fn list(
    AuthUser(user): AuthUser,
    query: web::Query<Page>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let limit = page_size(query.limit)?;
    let page = state
        .chat
        .list(&user, query.before.as_deref(), limit)
        .await?;
    Ok(HttpResponse::Ok().json(json!({
        "conversations": page.conversations,
        "next_cursor": page.next_cursor,
    })))
}

/// `GET /api/conversations/{id}`
pub async fn get(
    AuthUser(user): AuthUser,
    id: web::Path<u64>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let conversation = state.chat.get(&user, id.into_inner()).await?;
    Ok(HttpResponse::Ok().json(json!({ "conversation": conversation })))
}

/// `GET /api/conversations/{id}/messages?before=&limit=`: newest first.
pub async fn history(
    AuthUser(user): AuthUser,
    id: web::Path<u64>,
    query: web::Query<MessagePage>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let limit = page_size(query.limit)?;
    // One extra row tells whether another page exists.
    let mut messages = state
        .chat
        .history(&user, id.into_inner(), query.before, limit + 1)
        .await?;
    let more = messages.len() > limit as usize;
    messages.truncate(limit as usize);
    let next_cursor = more.then(|| messages.last().map(|m| m.id)).flatten();
    Ok(HttpResponse::Ok().json(json!({
        "messages": messages,
        "next_cursor": next_cursor,
    })))
}

/// `POST /api/conversations/{id}/messages`: 201 when stored now, 200 with
/// the message stored before under the same `client_id`.
pub async fn send(
    AuthUser(user): AuthUser,
    id: web::Path<u64>,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let raw = body::read(&req, payload, MAX_BODY_BYTES).await?;
    let draft: Draft = body::parse_json(&raw)?;
    let (message, stored) = state.chat.send(&user, id.into_inner(), &draft).await?;
    Ok(created_or_found(stored).json(json!({ "message": message })))
}

/// `PATCH /api/conversations/{id}/messages/{message_id}` `{"body": ...}`:
/// the sender's own messages only.
pub async fn edit(
    AuthUser(user): AuthUser,
    path: web::Path<(u64, u64)>,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (id, message_id) = path.into_inner();
    let raw = body::read(&req, payload, MAX_BODY_BYTES).await?;
    let Edit { body } = body::parse_json(&raw)?;
    let message = state.chat.edit(&user, id, message_id, &body).await?;
    Ok(HttpResponse::Ok().json(json!({ "message": message })))
}

/// `DELETE /api/conversations/{id}/messages/{message_id}`: the sender's own
/// messages only.
pub async fn delete(
    AuthUser(user): AuthUser,
    path: web::Path<(u64, u64)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (id, message_id) = path.into_inner();
    state.chat.delete(&user, id, message_id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `PUT /api/conversations/{id}/read` `{"up_to": message_id}`
pub async fn read(
    AuthUser(user): AuthUser,
    id: web::Path<u64>,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let raw = body::read(&req, payload, MAX_BODY_BYTES).await?;
    let Read { up_to } = body::parse_json(&raw)?;
    let receipt = state.chat.read(&user, id, up_to).await?;
    let unread_count = state.chat.unread_count(&user, id).await?;
    Ok(HttpResponse::Ok().json(json!({
        "up_to": receipt.up_to,
        "unread_count": unread_count,
    })))
}

/// `POST /api/conversations/{id}/members` `{"members": [...]}`
pub async fn add_members(
    AuthUser(user): AuthUser,
    id: web::Path<u64>,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let raw = body::read(&req, payload, MEMBERS_BODY_BYTES).await?;
    let Members { members } = body::parse_json(&raw)?;
    let conversation = state
        .chat
        .add_members(&user, id.into_inner(), &members)
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "conversation": conversation })))
}

/// `DELETE /api/conversations/{id}/members` `{"members": [...]}`
pub async fn remove_members(
    AuthUser(user): AuthUser,
    id: web::Path<u64>,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let raw = body::read(&req, payload, MEMBERS_BODY_BYTES).await?;
    let Members { members } = body::parse_json(&raw)?;
    state
        .chat
        .remove_members(&user, id.into_inner(), &members)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `DELETE /api/conversations/{id}/members/{user_id}`
pub async fn remove_member(
    AuthUser(user): AuthUser,
    path: web::Path<(u64, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (id, member) = path.into_inner();
    state.chat.remove_members(&user, id, &[member]).await?;
    Ok(HttpResponse::NoContent().finish())
}
