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
        .ignore();
    pool.publish_in(&mut pipe, &names.control(), &control.to_message())
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
        .ignore();
    pool.publish_in(&mut pipe, &names.control(), &control.to_message())
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
    // On a single Redis, also the names revocations had before the keys
    // moved into the shared slot, so a revocation made by an earlier
    // version still holds until it expires (a cluster never had them).
    let legacy = !pool.target().is_cluster();
    // Without a jti the token key asked for is one nobody sets.
    let jti_key = jti.unwrap_or_default();
    let mut pipe = redis::pipe();
    pipe.get(names.revoked_user(user))
        .exists(names.revoked_token(jti_key));
    if legacy {
        pipe.get(names.legacy_revoked_user(user))
            .exists(names.legacy_revoked_token(jti_key));
    }
    let (at, revoked, legacy_at, legacy_revoked): (Option<u64>, bool, Option<u64>, bool) = if legacy
    {
        pipe.query_async(&mut conn).await.map_err(unavailable)?
    } else {
        let (at, revoked): (Option<u64>, bool) =
            pipe.query_async(&mut conn).await.map_err(unavailable)?;
        (at, revoked, None, false)
    };
    let disconnected_at = at.max(legacy_at);
    let jti_revoked = jti.map(|_| revoked || legacy_revoked);
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use notify_auth::jwt::sign_hs256;
    use notify_auth::{Claims, JwtConfig, JwtVerifier};

    use super::*;

    const SECRET: &[u8] = b"revocation-test-secret";
    const MAX_LIFETIME: u64 = 3600;
    const LEEWAY: u64 = 30;

    fn verifier() -> JwtVerifier {
        JwtVerifier::new(&JwtConfig {
            max_lifetime: Duration::from_secs(MAX_LIFETIME),
            leeway: Duration::from_secs(LEEWAY),
            ..JwtConfig::hs256(SECRET)
        })
        .unwrap()
    }

    fn token(exp: u64) -> String {
        let claims = Claims {
            sub: "ann".into(),
            exp,
            iat: None,
            jti: None,
            roles: Vec::new(),
        };
        sign_hs256(SECRET, &claims).unwrap()
    }

    /// A pool on the test Redis and names no other test uses.
    fn redis() -> (RedisPool, ChannelNames) {
        let pool =
            crate::build_pool(&crate::RedisTarget::Single(notify_testkit::redis_url())).unwrap();
        let names = ChannelNames::new(format!("{}:", notify_testkit::unique("revocation")));
        (pool, names)
    }

    /// Milliseconds before `key` expires, as Redis counts them.
    async fn pttl(pool: &RedisPool, key: &str) -> i64 {
        let mut conn = crate::pool::conn(pool).await.unwrap();
        redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap()
    }

    async fn delete(pool: &RedisPool, key: &str) {
        let mut conn = crate::pool::conn(pool).await.unwrap();
        redis::cmd("DEL")
            .arg(key)
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
    }

    /// Seconds from `now` until the last moment the longest-lived token the
    /// verifier accepts at `now` is still accepted.
    async fn longest_acceptance_from(v: &JwtVerifier, now: u64) -> u64 {
        let exp = now + MAX_LIFETIME + LEEWAY;
        assert!(v.verify(&token(exp)).await.is_ok(), "accepted now");
        assert!(v.verify(&token(exp + 2)).await.is_err(), "the longest");
        exp + v.leeway().as_secs() - now
    }

    /// Revocations an earlier version stored under the old names (before the
    /// shared slot) still refuse their tokens on a single Redis.
    #[tokio::test]
    async fn revocations_under_the_old_names_still_hold() {
        let (pool, names) = redis();
        assert_eq!(
            check(&pool, &names, "ann", Some("j1"), Some(10))
                .await
                .unwrap(),
            None
        );
        let mut conn = crate::pool::conn(&pool).await.unwrap();
        redis::pipe()
            .set_ex(names.legacy_revoked_user("ann"), 20, 60)
            .set_ex(names.legacy_revoked_token("j2"), 1, 60)
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            check(&pool, &names, "ann", Some("j1"), Some(10))
                .await
                .unwrap(),
            Some(Revoked::User)
        );
        assert_eq!(
            check(&pool, &names, "ann", Some("j1"), Some(30))
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            check(&pool, &names, "bob", Some("j2"), Some(30))
                .await
                .unwrap(),
            Some(Revoked::Token)
        );
        assert_eq!(
            check(&pool, &names, "bob", None, Some(30)).await.unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn a_user_disconnect_is_kept_while_any_token_it_refuses_is_accepted() {
        let v = verifier();
        let (pool, names) = redis();
        let now = notify_auth::unix_now();
        let ttl = v.user_revocation_ttl().as_secs();
        disconnect_user(&pool, &names, "ann", now, ttl)
            .await
            .unwrap();
        let key = names.revoked_user("ann");
        let kept_ms = pttl(&pool, &key).await;
        let accepted_ms = longest_acceptance_from(&v, now).await as i64 * 1000;
        assert!(kept_ms > accepted_ms, "{kept_ms} <= {accepted_ms}");
        assert_eq!(
            check(&pool, &names, "ann", None, Some(now)).await.unwrap(),
            Some(Revoked::User)
        );
        delete(&pool, &key).await;
    }

    #[tokio::test]
    async fn a_token_revocation_is_kept_while_the_token_is_accepted() {
        let v = verifier();
        let (pool, names) = redis();
        let now = notify_auth::unix_now();
        // With its exp: until the leeway after it has passed.
        let exp = now + 600;
        let ttl = v.token_revocation_ttl(Some(exp), now).as_secs();
        revoke_token(&pool, &names, "known-exp", ttl).await.unwrap();
        let key = names.revoked_token("known-exp");
        let kept_ms = pttl(&pool, &key).await;
        assert!(kept_ms > (exp + LEEWAY - now) as i64 * 1000, "{kept_ms}");
        assert_eq!(
            check(&pool, &names, "ann", Some("known-exp"), Some(now))
                .await
                .unwrap(),
            Some(Revoked::Token)
        );
        delete(&pool, &key).await;
        // Without: as long as the longest-lived token accepted now.
        let ttl = v.token_revocation_ttl(None, now).as_secs();
        revoke_token(&pool, &names, "unknown-exp", ttl)
            .await
            .unwrap();
        let key = names.revoked_token("unknown-exp");
        let kept_ms = pttl(&pool, &key).await;
        let accepted_ms = longest_acceptance_from(&v, now).await as i64 * 1000;
        assert!(kept_ms > accepted_ms, "{kept_ms} <= {accepted_ms}");
        delete(&pool, &key).await;
    }
}
