//! What every connection of one node shares, and the token gate every
//! connection passes: at the upgrade, in an `auth` frame and in `refresh`.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use chrono::TimeDelta;
use governor::DefaultKeyedRateLimiter;
use notify_auth::{AuthError, Claims, JwtVerifier};
use notify_bus::{revocation, Publisher, RedisPool};
use notify_protocol::ChannelNames;
use notify_service::refusals::Counters;
use notify_store::DbPool;
use tokio::sync::Semaphore;

use crate::acks::Acks;
use crate::config::Limits;
use crate::registry::Registry;
use crate::subscriber::SubscriberStatus;

/// Everything the connections of one node share.
pub struct Node {
    pub id: String,
    pub registry: Arc<Registry>,
    pub jwt: JwtVerifier,
    pub db: DbPool,
    /// Pooled connections for revocation checks (never the subscriber's).
    pub redis: RedisPool,
    pub publisher: Publisher,
    pub channels: ChannelNames,
    pub limits: Limits,
    pub allowed_origins: Option<Vec<String>>,
    pub subscriber: Arc<SubscriberStatus>,
    /// Set on shutdown: new upgrades are refused and `/ready` fails.
    pub draining: AtomicBool,
    pub acks: Acks,
    /// Bounds concurrent MySQL backfills, so 10,000 connections resyncing
    /// after a Redis restart queue up instead of stampeding MySQL.
    pub backfills: Semaphore,
    /// How long an event may trail its row's `created_at`; catch-ups reach
    /// back this far.
    pub publish_lag: TimeDelta,
    /// Sockets open on this node, authenticated or not.
    pub open: AtomicUsize,
    /// New connections per client address.
    pub connects: DefaultKeyedRateLimiter<IpAddr>,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpAddr>,
    /// Refused upgrades and frames by error code, for `/metrics` and the
    /// stats log.
    pub refusals: Arc<Counters>,
    /// Connections the node closed, by close reason.
    pub closes: Counters,
}

/// Counts a socket as open on the node for as long as it lives.
pub struct OpenSocket(pub(crate) Arc<Node>);

impl OpenSocket {
    pub fn new(node: Arc<Node>) -> Self {
        node.open.fetch_add(1, Ordering::Relaxed);
        Self(node)
    }
}

impl Drop for OpenSocket {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why a token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Expired,
    Invalid,
    Revoked,
}

impl Refusal {
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Expired => "token expired",
            Refusal::Invalid => "invalid token",
            Refusal::Revoked => "token revoked",
        }
    }
}

impl Node {
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Verifies a token and checks that it was not revoked.
    pub async fn authorize(&self, token: &str) -> Result<Claims, Refusal> {
        let claims = self.jwt.verify(token).await.map_err(|e| match e {
            AuthError::Expired => Refusal::Expired,
            AuthError::Invalid => Refusal::Invalid,
        })?;
        self.check_revoked(&claims.sub, claims.jti.as_deref(), claims.iat)
            .await?;
        Ok(claims)
    }

    /// Redis being away does not lock everyone out: the token's signature
    /// and expiry were checked, and no revocation can be recorded meanwhile.
    pub(crate) async fn check_revoked(
        &self,
        user: &str,
        jti: Option<&str>,
        iat: Option<u64>,
    ) -> Result<(), Refusal> {
        match revocation::check(&self.redis, &self.channels, user, jti, iat).await {
            Ok(None) => Ok(()),
            Ok(Some(_)) => Err(Refusal::Revoked),
            Err(error) => {
                tracing::warn!(%error, "could not check token revocations");
                Ok(())
            }
        }
    }
}
