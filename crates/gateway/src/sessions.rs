//! This node's live sessions, reported to Redis (`notify_bus::sessions`)
//! in batches by the node's liveness task ([`crate::liveness`]), so users
//! can list and close them and servers can ask who is online.
//!
//! Each open session's JSON is kept here too: should Redis lose this node
//! (a restart, or the node taken for dead after a long pause), every
//! session is reported again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use notify_bus::sessions::MAX_CHANGES_PER_CALL;
use notify_bus::{RedisConnection, SessionChange, SessionStore};
use tokio::sync::Notify;

use crate::liveness::Reported;

/// A change not reported yet.
enum Pending {
    Opened(SessionId),
    Closed(SessionId, Arc<str>),
}

#[derive(Default)]
struct Local {
    /// Open sessions: id -> (user, JSON).
    live: HashMap<SessionId, (Arc<str>, Box<str>)>,
    pending: Vec<Pending>,
}

pub struct Sessions {
    store: SessionStore,
    local: Mutex<Local>,
    changed: Notify,
}

impl Sessions {
    pub fn new(store: SessionStore) -> Self {
        Self {
            store,
            local: Mutex::default(),
            changed: Notify::new(),
        }
    }

    pub fn open(&self, session: SessionId, user: &str, json: String) {
        {
            let mut local = self.local();
            local
                .live
                .insert(session, (Arc::from(user), json.into_boxed_str()));
            local.pending.push(Pending::Opened(session));
        }
        self.changed.notify_one();
    }

    pub fn close(&self, session: SessionId) {
        {
            let mut local = self.local();
            if let Some((user, _)) = local.live.remove(&session) {
                // Never reported (Redis away meanwhile): nothing to undo,
                // and pending changes stay bounded by the open sessions.
                let unsent = local
                    .pending
                    .iter()
                    .position(|p| matches!(p, Pending::Opened(s) if *s == session));
                match unsent {
                    Some(at) => {
                        local.pending.remove(at);
                    }
                    None => local.pending.push(Pending::Closed(session, user)),
                }
            }
        }
        self.changed.notify_one();
    }

    /// Resolves after the next open or close.
    pub async fn changed(&self) {
        self.changed.notified().await
    }

    /// Redis lost what this node reported: every open session is reported
    /// again.
    pub fn report_all_again(&self) {
        let mut local = self.local();
        let Local { live, pending } = &mut *local;
        pending.retain(|p| matches!(p, Pending::Closed(..)));
        pending.extend(live.keys().map(|session| Pending::Opened(*session)));
    }

    /// Sends what is pending; what fails is kept for the next try.
    pub async fn flush(&self, conn: &mut RedisConnection, instance: &str, ttl_ms: u64) -> Reported {
        loop {
            // Owned copies: the lock is not held across the call. Changes
            // are only ever appended meanwhile, so the first `taken` are
            // the ones sent.
            let (taken, batch) = {
                let local = self.local();
                let taken = local.pending.len().min(MAX_CHANGES_PER_CALL);
                let batch: Vec<(String, String, Option<Box<str>>)> = local.pending[..taken]
                    .iter()
                    .filter_map(|pending| match pending {
                        Pending::Opened(session) => {
                            let (user, json) = local.live.get(session)?;
                            Some((user.to_string(), hex(*session), Some(json.clone())))
                        }
                        Pending::Closed(session, user) => {
                            Some((user.to_string(), hex(*session), None))
                        }
                    })
                    .collect();
                (taken, batch)
            };
            if taken == 0 {
                return Reported::Done;
            }
            let changes: Vec<SessionChange<'_>> = batch
                .iter()
                .map(|(user, session_id, json)| match json {
                    Some(json) => SessionChange::Opened {
                        user,
                        session_id,
                        json,
                    },
                    None => SessionChange::Closed { user, session_id },
                })
                .collect();
            match self.store.record(conn, instance, ttl_ms, &changes).await {
                Ok(true) => {
                    let mut local = self.local();
                    let done = taken.min(local.pending.len());
                    local.pending.drain(..done);
                }
                Ok(false) => {
                    self.report_all_again();
                    return Reported::Unknown;
                }
                Err(error) => return Reported::Failed(error.to_string()),
            }
        }
    }

    fn local(&self) -> MutexGuard<'_, Local> {
        self.local.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A connection's session id: 128 random bits, shown as 32 hex digits.
/// Two `u64`s rather than a `SessionId`, whose 16-byte alignment would pad
/// every connection's task and registry entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId(u64, u64);

impl SessionId {
    pub fn random() -> Self {
        Self(rand::random(), rand::random())
    }

    /// From its 32 hex digits; None for anything else.
    pub fn parse(hex: &str) -> Option<Self> {
        if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let high = u64::from_str_radix(&hex[..16], 16).ok()?;
        let low = u64::from_str_radix(&hex[16..], 16).ok()?;
        Some(Self(high, low))
    }
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}{:016x}", self.0, self.1)
    }
}

/// A session id as clients see it.
pub fn hex(session: SessionId) -> String {
    session.to_string()
}

#[cfg(test)]
mod tests {
    use super::SessionId;

    #[test]
    fn session_ids_round_trip_as_hex() {
        let id = SessionId::random();
        let hex = id.to_string();
        assert_eq!(hex.len(), 32);
        assert_eq!(SessionId::parse(&hex), Some(id));
        assert_eq!(SessionId::parse("xyz"), None);
        assert_eq!(SessionId::parse(&"g".repeat(32)), None);
        assert_eq!(
            SessionId(1, 2).to_string(),
            "00000000000000010000000000000002"
        );
    }
}
