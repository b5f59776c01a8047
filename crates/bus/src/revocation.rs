//! Revoked tokens, kept in Redis so every gateway and api node refuses them.
//!
//! A user disconnect stores the time of the revocation: tokens of that user
//! issued (`iat`) at or before it are refused. A token revocation stores its
//! `jti`. Both keys expire when the tokens they refuse would have, so the
//! set never grows without bound. Each change is also announced on the
//! control channel so gateways close the connections it affects at once.

use notify_protocol::{ChannelNames, Control};

use crate::pool::unavailable;
use crate::{BusError, RedisPool};

/// Why a token may not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    /// Its `jti` was revoked.
    Token,
    /// Its user was disconnected after it was issued.
    User,
}

/// Refuses the tokens `user` holds now, for `ttl_secs`, and closes the
/// user's connections on every gateway.
pub async fn disconnect_user(
    pool: &RedisPool,
    names: &ChannelNames,
    user: &str,
    now: u64,
    ttl_secs: u64,
) -> Result<(), BusError> {
    let control = Control::DisconnectUser { user: user.into() };
    let mut pipe = redis::pipe();
    pipe.set_ex(names.revoked_user(user), now, ttl_secs.max(1))
        .ignore()
        .publish(names.control(), control.to_message())
        .ignore();
    run(pool, pipe).await
}

/// Refuses the token with this `jti` for `ttl_secs` and closes the
/// connections it opened on every gateway.
pub async fn revoke_token(
    pool: &RedisPool,
    names: &ChannelNames,
    jti: &str,
    ttl_secs: u64,
) -> Result<(), BusError> {
    let control = Control::RevokeToken { jti: jti.into() };
    let mut pipe = redis::pipe();
    pipe.set_ex(names.revoked_token(jti), 1, ttl_secs.max(1))
        .ignore()
        .publish(names.control(), control.to_message())
        .ignore();
    run(pool, pipe).await
}

/// Whether a token of `user`, issued at `iat`, with this `jti`, was revoked.
/// A token without `iat` counts as issued before any disconnect.
pub async fn check(
    pool: &RedisPool,
    names: &ChannelNames,
    user: &str,
    jti: Option<&str>,
    iat: Option<u64>,
) -> Result<Option<Revoked>, BusError> {
    let mut conn = crate::pool::conn(pool).await?;
    let mut pipe = redis::pipe();
    pipe.get(names.revoked_user(user));
    if let Some(jti) = jti {
        pipe.exists(names.revoked_token(jti));
    }
    let (disconnected_at, jti_revoked): (Option<u64>, Option<bool>) = if jti.is_some() {
        let (at, revoked): (Option<u64>, bool) =
            pipe.query_async(&mut conn).await.map_err(unavailable)?;
        (at, Some(revoked))
    } else {
        let (at,): (Option<u64>,) = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        (at, None)
    };
    if jti_revoked == Some(true) {
        return Ok(Some(Revoked::Token));
    }
    match disconnected_at {
        Some(at) if iat.is_none_or(|iat| iat <= at) => Ok(Some(Revoked::User)),
        _ => Ok(None),
    }
}

async fn run(pool: &RedisPool, pipe: redis::Pipeline) -> Result<(), BusError> {
    let mut conn = crate::pool::conn(pool).await?;
    pipe.query_async::<()>(&mut conn).await.map_err(unavailable)
}
