//! The signed-in user's own notifications: paging, unread count, marking
//! read and deleting. Every query is scoped to the token's user, so another
//! user's id looks exactly like one that does not exist (404).

use actix_web::{web, HttpResponse};
use notify_protocol::Event;
use notify_store::{pool, Notification, ReadOutcome};
use serde::Deserialize;
use serde_json::json;

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::state::AppState;

pub const DEFAULT_PAGE: u32 = 20;
pub const MAX_PAGE: u32 = 100;

#[derive(Deserialize)]
pub struct PageQuery {
    limit: Option<u32>,
    before: Option<u64>,
    unread_only: Option<bool>,
}

pub async fn list(
    AuthUser(user): AuthUser,
    query: web::Query<PageQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::InvalidQuery(format!(
            "limit must be between 1 and {MAX_PAGE}"
        )));
    }
    let mut conn = state.reads.conn(&state, &user).await?;
    // One extra row tells whether another page exists.
    let mut page = Notification::page(
        &mut conn,
        &user,
        query.before,
        i64::from(limit) + 1,
        query.unread_only.unwrap_or(false),
    )
    .await?;
    let more = page.len() > limit as usize;
    page.truncate(limit as usize);
    let next_cursor = more.then(|| page.last().map(|n| n.id)).flatten();
    let unread_count = Notification::unread_count(&mut conn, &user).await?;
    let notifications: Vec<_> = page.into_iter().map(Notification::into_wire).collect();
    Ok(HttpResponse::Ok().json(json!({
        "notifications": notifications,
        "next_cursor": next_cursor,
        "unread_count": unread_count,
    })))
}

pub async fn unread_count(
    AuthUser(user): AuthUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = state.reads.conn(&state, &user).await?;
    let unread_count = Notification::unread_count(&mut conn, &user).await?;
    Ok(HttpResponse::Ok().json(json!({ "unread_count": unread_count })))
}

pub async fn read_one(
    AuthUser(user): AuthUser,
    id: web::Path<u64>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    // Before the write: a read racing with its commit goes to the primary.
    state.reads.wrote(&state, &user).await;
    let mut conn = pool::get(&state.db).await?;
    let outcome = Notification::mark_one_read(&mut conn, &user, id, notify_store::now()).await?;
    if outcome == ReadOutcome::NotFound {
        return Err(ApiError::NotFound);
    }
    let unread_count = Notification::unread_count(&mut conn, &user).await?;
    drop(conn);
    // Again after the commit, in case the write outlasted the first mark.
    state.reads.wrote(&state, &user).await;
    if outcome == ReadOutcome::Marked {
        state.publish(&user, &Event::Read { ids: vec![id] });
    }
    Ok(HttpResponse::Ok().json(json!({
        "id": id,
        "changed": outcome == ReadOutcome::Marked,
        "unread_count": unread_count,
    })))
}

pub async fn read_all(
    AuthUser(user): AuthUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    state.reads.wrote(&state, &user).await;
    let mut conn = pool::get(&state.db).await?;
    let (updated, up_to) =
        Notification::mark_all_read(&mut conn, &user, notify_store::now()).await?;
    let unread_count = Notification::unread_count(&mut conn, &user).await?;
    drop(conn);
    state.reads.wrote(&state, &user).await;
    if let (true, Some(up_to)) = (updated > 0, up_to) {
        state.publish(&user, &Event::ReadAll { up_to });
    }
    Ok(HttpResponse::Ok().json(json!({
        "updated": updated,
        "up_to": up_to,
        "unread_count": unread_count,
    })))
}

pub async fn delete(
    AuthUser(user): AuthUser,
    id: web::Path<u64>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    state.reads.wrote(&state, &user).await;
    let mut conn = pool::get(&state.db).await?;
    if !Notification::delete(&mut conn, &user, id).await? {
        return Err(ApiError::NotFound);
    }
    drop(conn);
    state.reads.wrote(&state, &user).await;
    state.publish(&user, &Event::Deleted { ids: vec![id] });
    Ok(HttpResponse::NoContent().finish())
}
