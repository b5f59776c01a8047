//! Who is connected to this node: the local connections of every user with
//! their roles, and so which user and role channels (and whether the
//! everyone channel) the subscriber must hold.
//!
//! Connections register and deregister here without touching Redis; each
//! change only marks the channels concerned in [`Interest`].

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use notify_auth::unix_now;

use bytestring::ByteString;
use tokio::sync::Semaphore;

use crate::interest::{Channel, Interest};
use crate::send_queue::{CloseSignal, SendQueue};

/// One local connection.
struct Conn {
    id: u64,
    queue: Arc<SendQueue>,
    /// A hash of its token's `jti` (0 for none), to find the connections a
    /// token revocation closes without keeping every token id around.
    token: u64,
    /// Its token's roles, shared with the role counts' keys.
    roles: Box<[Arc<str>]>,
    /// Its session id, by which its user may close it.
    session: crate::sessions::SessionId,
}

/// How long announced revocations are remembered here: a connection whose
/// check in Redis passed just before an announcement, but which registers
/// just after it, is closed too.
const RECENT_REVOCATIONS: Duration = Duration::from_secs(30);
/// Bound on the remembered revocations, oldest dropped first.
const MAX_RECENT_REVOCATIONS: usize = 10_000;

enum Revocation {
    /// Tokens of `user` issued up to `at` (Unix seconds).
    User { user: Box<str>, at: u64 },
    /// The token whose `jti` has this hash.
    Token(u64),
}

struct UserConns {
    conns: Vec<Conn>,
    /// The subscriber confirmed the user's channel is subscribed.
    subscribed: bool,
    /// Shared by the user's connections: one MySQL operation at a time per
    /// user, so one user with many connections cannot take the node's whole
    /// pool from everyone else.
    db_turn: Arc<Semaphore>,
}

impl Default for UserConns {
    fn default() -> Self {
        Self {
            conns: Vec::new(),
            subscribed: false,
            db_turn: Arc::new(Semaphore::new(1)),
        }
    }
}

pub struct Registry {
    users: Mutex<HashMap<Arc<str>, UserConns>>,
    /// Local connections per role; taken after `users` when both are held.
    roles: Mutex<HashMap<Arc<str>, usize>>,
    /// Local connections: the everyone channel is wanted while non-zero.
    connections: AtomicUsize,
    interest: Arc<Interest>,
    next_id: AtomicU64,
    max_frames: usize,
    max_bytes: usize,
    recent: Mutex<VecDeque<(Instant, Revocation)>>,
}

/// A connection's place in the registry; dropping it deregisters, so a
/// connection task that ends in any way (even by panic) cleans up.
pub struct Registration {
    registry: Arc<Registry>,
    user: Arc<str>,
    id: u64,
    db_turn: Arc<Semaphore>,
}

impl Registration {
    /// Waits for the user's turn at MySQL; held until the permit drops.
    pub async fn db_turn(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.db_turn.acquire().await.ok()
    }

    /// The connection now runs on a newer token (a `refresh` frame), whose
    /// roles replace the old ones.
    pub fn set_token(&self, jti: Option<&str>, roles: &[String]) {
        let mut users = self.registry.users();
        let Some(conn) = users
            .get_mut(&self.user)
            .and_then(|entry| entry.conns.iter_mut().find(|c| c.id == self.id))
        else {
            return;
        };
        conn.token = token_hash(jti);
        if conn
            .roles
            .iter()
            .map(|r| &**r)
            .eq(roles.iter().map(String::as_str))
        {
            return;
        }
        self.registry.release_roles(&conn.roles);
        conn.roles = self.registry.hold_roles(roles);
    }

    /// This connection's number on the node.
    pub fn id(&self) -> u64 {
        self.id
    }
}

fn token_hash(jti: Option<&str>) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    match jti {
        None => 0,
        Some(jti) => BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
            .hash_one(jti)
            .max(1),
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.remove(&self.user, self.id);
    }
}

impl Registry {
    pub fn new(max_frames: usize, max_bytes: usize) -> Arc<Self> {
        Arc::new(Self {
            users: Mutex::default(),
            roles: Mutex::default(),
            connections: AtomicUsize::new(0),
            interest: Arc::default(),
            next_id: AtomicU64::new(1),
            max_frames,
            max_bytes,
            recent: Mutex::default(),
        })
    }

    pub fn register(
        self: &Arc<Self>,
        user: &str,
        queue: Arc<SendQueue>,
        jti: Option<&str>,
        iat: Option<u64>,
        roles: &[String],
        session: crate::sessions::SessionId,
    ) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let token = token_hash(jti);
        let roles = self.hold_roles(roles);
        let (user, db_turn) = {
            let mut users = self.users();
            let key: Arc<str> = match users.get_key_value(user) {
                Some((key, _)) => key.clone(),
                None => {
                    let key: Arc<str> = Arc::from(user);
                    self.interest.mark(Channel::User(key.clone()));
                    key
                }
            };
            if self.connections.fetch_add(1, Ordering::Relaxed) == 0 {
                self.interest.mark(Channel::All);
            }
            let entry = users.entry(key.clone()).or_default();
            if entry.subscribed {
                queue.set_subscribed(true);
            }
            entry.conns.push(Conn {
                id,
                queue: queue.clone(),
                token,
                roles,
                session,
            });
            (key, entry.db_turn.clone())
        };
        // Checked after joining `users`: a revocation is remembered before
        // its scan of `users`, so one or the other sees this connection.
        if self.recently_revoked(&user, token, iat) {
            queue.close(CloseSignal::Revoked);
        }
        Registration {
            registry: self.clone(),
            user,
            id,
            db_turn,
        }
    }

    fn remove(&self, user: &Arc<str>, id: u64) {
        let mut users = self.users();
        let Some(entry) = users.get_mut(user) else {
            return;
        };
        let Some(at) = entry.conns.iter().position(|conn| conn.id == id) else {
            return;
        };
        let conn = entry.conns.swap_remove(at);
        if entry.conns.is_empty() {
            users.remove(user);
            self.interest.mark(Channel::User(user.clone()));
        }
        self.release_roles(&conn.roles);
        if self.connections.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.interest.mark(Channel::All);
        }
    }

    /// Counts a connection with `roles`, marking roles new to the node.
    fn hold_roles(&self, roles: &[String]) -> Box<[Arc<str>]> {
        if roles.is_empty() {
            return Box::default();
        }
        let mut counts = self.roles.lock().unwrap_or_else(|e| e.into_inner());
        roles
            .iter()
            .map(|role| {
                if let Some((key, _)) = counts.get_key_value(role.as_str()) {
                    let key = key.clone();
                    if let Some(count) = counts.get_mut(&key) {
                        *count += 1;
                    }
                    key
                } else {
                    let key: Arc<str> = Arc::from(role.as_str());
                    counts.insert(key.clone(), 1);
                    self.interest.mark(Channel::Role(key.clone()));
                    key
                }
            })
            .collect()
    }

    /// Uncounts a connection's roles, marking roles no longer needed.
    fn release_roles(&self, roles: &[Arc<str>]) {
        if roles.is_empty() {
            return;
        }
        let mut counts = self.roles.lock().unwrap_or_else(|e| e.into_inner());
        for role in roles {
            if let Some(count) = counts.get_mut(role) {
                *count -= 1;
                if *count == 0 {
                    counts.remove(role);
                    self.interest.mark(Channel::Role(role.clone()));
                }
            }
        }
    }

    /// Queues a role event on every local connection with `role`, except
    /// those that take it on the channel of an earlier role the event
    /// names (`event_roles`), so a connection gets it once.
    pub fn deliver_role(&self, role: &str, event_roles: &[String], frame: &ByteString) -> usize {
        let users = self.users();
        let mut delivered = 0;
        for conn in users.values().flat_map(|entry| &entry.conns) {
            let first = event_roles
                .iter()
                .find(|r| conn.roles.iter().any(|c| &**c == r.as_str()));
            let takes = match first {
                Some(first) => first == role,
                // Not named in the frame (a frame we did not write):
                // deliver on the channel it came by.
                None => conn.roles.iter().any(|c| &**c == role),
            };
            if takes && conn.queue.push(frame, self.max_frames, self.max_bytes) {
                delivered += 1;
            }
        }
        delivered
    }

    /// Queues `frame` on every local connection.
    pub fn deliver_all(&self, frame: &ByteString) -> usize {
        let users = self.users();
        users
            .values()
            .flat_map(|entry| &entry.conns)
            .filter(|conn| conn.queue.push(frame, self.max_frames, self.max_bytes))
            .count()
    }

    /// The interest every registration marks.
    pub fn interest(&self) -> &Arc<Interest> {
        &self.interest
    }

    pub fn wants_role(&self, role: &str) -> bool {
        self.roles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(role)
    }

    pub fn roles_wanted(&self) -> Vec<Arc<str>> {
        let roles = self.roles.lock().unwrap_or_else(|e| e.into_inner());
        roles.keys().cloned().collect()
    }

    pub fn wants_all(&self) -> bool {
        self.connections.load(Ordering::Relaxed) > 0
    }

    /// Queues `frame` on every local connection of `user`; returns how many
    /// took it.
    pub fn deliver(&self, user: &str, frame: &ByteString) -> usize {
        let users = self.users();
        let Some(entry) = users.get(user) else {
            return 0;
        };
        entry
            .conns
            .iter()
            .filter(|conn| conn.queue.push(frame, self.max_frames, self.max_bytes))
            .count()
    }

    /// Connections `user` has on this node.
    pub fn user_connections(&self, user: &str) -> usize {
        self.users().get(user).map_or(0, |e| e.conns.len())
    }

    pub fn wants(&self, user: &str) -> bool {
        self.users().contains_key(user)
    }

    /// Every user with a local connection.
    pub fn users_wanted(&self) -> Vec<Arc<str>> {
        self.users().keys().cloned().collect()
    }

    /// Records that these users' channels are (or are no longer) subscribed
    /// and tells their connections.
    pub fn set_subscribed<'a>(
        &self,
        users: impl IntoIterator<Item = &'a Arc<str>>,
        subscribed: bool,
    ) {
        let mut map = self.users();
        for user in users {
            if let Some(entry) = map.get_mut(user) {
                entry.subscribed = subscribed;
                for conn in &entry.conns {
                    conn.queue.set_subscribed(subscribed);
                }
            }
        }
    }

    /// The Redis connection is gone: nothing is subscribed any more.
    pub fn clear_subscribed(&self) {
        for entry in self.users().values_mut() {
            entry.subscribed = false;
            for conn in &entry.conns {
                conn.queue.set_subscribed(false);
            }
        }
    }

    /// Asks every local connection to catch up on what was created since
    /// `since` (the bus was lost and is back).
    pub fn resync_all(&self, since: chrono::NaiveDateTime) {
        for entry in self.users().values() {
            for conn in &entry.conns {
                conn.queue.resync(since);
            }
        }
    }

    /// Every local connection, for draining.
    pub fn queues(&self) -> Vec<Arc<SendQueue>> {
        self.users()
            .values()
            .flat_map(|entry| entry.conns.iter().map(|conn| conn.queue.clone()))
            .collect()
    }

    /// Closes every local connection of `user` (1008); returns how many.
    pub fn disconnect_user(&self, user: &str) -> usize {
        let at = unix_now();
        self.remember(Revocation::User {
            user: user.into(),
            at,
        });
        let users = self.users();
        let Some(entry) = users.get(user) else {
            return 0;
        };
        for conn in &entry.conns {
            conn.queue.close(CloseSignal::Revoked);
        }
        entry.conns.len()
    }

    /// Closes `user`'s local connections with session id `session` (or,
    /// with `keep`, every other one); returns how many.
    pub fn close_sessions(
        &self,
        user: &str,
        session: Option<crate::sessions::SessionId>,
        keep: bool,
    ) -> usize {
        let users = self.users();
        let Some(entry) = users.get(user) else {
            return 0;
        };
        let mut closed = 0;
        for conn in entry
            .conns
            .iter()
            .filter(|c| (Some(c.session) == session) != keep)
        {
            conn.queue.close(CloseSignal::SessionRevoked);
            closed += 1;
        }
        closed
    }

    /// Closes every local connection opened with the token `jti` (1008);
    /// returns how many.
    pub fn revoke_token(&self, jti: &str) -> usize {
        let token = token_hash(Some(jti));
        self.remember(Revocation::Token(token));
        let mut closed = 0;
        for entry in self.users().values() {
            for conn in entry.conns.iter().filter(|c| c.token == token) {
                conn.queue.close(CloseSignal::Revoked);
                closed += 1;
            }
        }
        closed
    }

    fn recent(&self) -> MutexGuard<'_, VecDeque<(Instant, Revocation)>> {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        while recent
            .front()
            .is_some_and(|(when, _)| when.elapsed() > RECENT_REVOCATIONS)
        {
            recent.pop_front();
        }
        recent
    }

    fn remember(&self, revocation: Revocation) {
        let mut recent = self.recent();
        if recent.len() >= MAX_RECENT_REVOCATIONS {
            recent.pop_front();
        }
        recent.push_back((Instant::now(), revocation));
    }

    fn recently_revoked(&self, user: &str, token: u64, iat: Option<u64>) -> bool {
        self.recent()
            .iter()
            .any(|(_, revocation)| match revocation {
                Revocation::User { user: u, at } => {
                    &**u == user && iat.is_none_or(|iat| iat <= *at)
                }
                Revocation::Token(hash) => token != 0 && *hash == token,
            })
    }

    /// (connections, users) held by this node.
    pub fn counts(&self) -> (usize, usize) {
        let users = self.users();
        (users.values().map(|e| e.conns.len()).sum(), users.len())
    }

    fn users(&self) -> MutexGuard<'_, HashMap<Arc<str>, UserConns>> {
        self.users.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::send_queue::Next;

    fn id(n: u64) -> crate::sessions::SessionId {
        crate::sessions::SessionId::parse(&format!("{n:032x}")).unwrap()
    }

    #[test]
    fn first_and_last_connection_mark_the_user_dirty() {
        let registry = Registry::new(10, 1000);
        let a = registry.register("u", Arc::default(), None, None, &[], id(0));
        let b = registry.register("u", Arc::default(), None, None, &[], id(0));
        // The user's channel and the everyone channel.
        assert_eq!(registry.interest().take().len(), 2);
        drop(a);
        assert!(registry.interest().take().is_empty());
        assert!(registry.wants("u"));
        drop(b);
        assert_eq!(registry.interest().take().len(), 2);
        assert!(!registry.wants("u"));
        assert_eq!(registry.counts(), (0, 0));
    }

    #[test]
    fn delivers_to_every_connection_of_the_user_only() {
        let registry = Registry::new(10, 1000);
        let (a1, a2, b): (Arc<SendQueue>, Arc<SendQueue>, Arc<SendQueue>) = Default::default();
        let _r = [
            registry.register("a", a1.clone(), None, None, &[], id(0)),
            registry.register("a", a2.clone(), None, None, &[], id(0)),
            registry.register("b", b.clone(), None, None, &[], id(0)),
        ];
        assert_eq!(registry.deliver("a", &ByteString::from_static("x")), 2);
        assert!(matches!(a1.next(), Next::Send(_)));
        assert!(matches!(a2.next(), Next::Send(_)));
        assert!(matches!(b.next(), Next::Idle));
        assert_eq!(registry.counts(), (3, 2));
    }

    #[test]
    fn revocations_close_exactly_the_affected_connections() {
        let registry = Registry::new(10, 1000);
        let (a1, a2, b): (Arc<SendQueue>, Arc<SendQueue>, Arc<SendQueue>) = Default::default();
        let _r = [
            registry.register("a", a1.clone(), Some("t1"), None, &[], id(0)),
            registry.register("a", a2.clone(), Some("t2"), None, &[], id(0)),
            registry.register("b", b.clone(), Some("t3"), None, &[], id(0)),
        ];
        assert_eq!(registry.revoke_token("t2"), 1);
        assert!(matches!(a2.next(), Next::Close(CloseSignal::Revoked)));
        assert!(matches!(a1.next(), Next::Idle));
        assert_eq!(registry.revoke_token("nope"), 0);
        _r[0].set_token(Some("t4"), &[]);
        assert_eq!(registry.revoke_token("t1"), 0);
        assert_eq!(registry.disconnect_user("b"), 1);
        assert!(matches!(b.next(), Next::Close(CloseSignal::Revoked)));
        assert!(matches!(a1.next(), Next::Idle));
    }

    #[test]
    fn sessions_are_closed_one_or_all_but_one() {
        let registry = Registry::new(10, 1000);
        let (s1, s2, s3, other): (
            Arc<SendQueue>,
            Arc<SendQueue>,
            Arc<SendQueue>,
            Arc<SendQueue>,
        ) = Default::default();
        let _r = [
            registry.register("a", s1.clone(), None, None, &[], id(1)),
            registry.register("a", s2.clone(), None, None, &[], id(2)),
            registry.register("a", s3.clone(), None, None, &[], id(3)),
            registry.register("b", other.clone(), None, None, &[], id(2)),
        ];
        assert_eq!(registry.close_sessions("a", Some(id(2)), false), 1);
        assert!(matches!(
            s2.next(),
            Next::Close(CloseSignal::SessionRevoked)
        ));
        assert!(matches!(s1.next(), Next::Idle));
        assert_eq!(registry.close_sessions("a", Some(id(3)), true), 2);
        assert!(matches!(
            s1.next(),
            Next::Close(CloseSignal::SessionRevoked)
        ));
        assert!(matches!(s3.next(), Next::Idle));
        assert!(matches!(other.next(), Next::Idle));
        assert_eq!(registry.close_sessions("nobody", Some(id(1)), false), 0);
        assert_eq!(registry.close_sessions("a", None, false), 0);
    }

    #[test]
    fn role_events_reach_each_connection_once() {
        let registry = Registry::new(10, 1000);
        let roles = |r: &[&str]| r.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (both, ops, none): (Arc<SendQueue>, Arc<SendQueue>, Arc<SendQueue>) =
            Default::default();
        let _r = [
            registry.register(
                "a",
                both.clone(),
                None,
                None,
                &roles(&["ops", "admin"]),
                id(0),
            ),
            registry.register("b", ops.clone(), None, None, &roles(&["ops"]), id(0)),
            registry.register("c", none.clone(), None, None, &[], id(0)),
        ];
        assert!(registry.wants_role("ops") && registry.wants_role("admin"));
        let named = roles(&["admin", "ops"]);
        let frame = ByteString::from_static("x");
        // The event arrives on both channels; `both` takes it on admin's.
        assert_eq!(registry.deliver_role("admin", &named, &frame), 1);
        assert_eq!(registry.deliver_role("ops", &named, &frame), 1);
        assert!(matches!(both.next(), Next::Send(_)));
        assert!(matches!(both.next(), Next::Idle));
        assert!(matches!(ops.next(), Next::Send(_)));
        assert!(matches!(none.next(), Next::Idle));
        assert_eq!(registry.deliver_all(&frame), 3);
        _r[1].set_token(None, &[]);
        assert!(!registry.wants_role("admin") || registry.wants_role("ops"));
        drop(_r);
        assert!(!registry.wants_role("ops") && !registry.wants_role("admin"));
        assert!(!registry.wants_all());
    }

    /// A connection checked in Redis just before a revocation was announced
    /// but registered just after is closed at registration.
    #[test]
    fn connections_registering_after_a_revocation_are_closed() {
        let registry = Registry::new(10, 1000);
        registry.revoke_token("stolen");
        registry.disconnect_user("mallory");
        let (stolen, other, mallory, later): (
            Arc<SendQueue>,
            Arc<SendQueue>,
            Arc<SendQueue>,
            Arc<SendQueue>,
        ) = Default::default();
        let now = unix_now();
        let _r = [
            registry.register("a", stolen.clone(), Some("stolen"), Some(now), &[], id(0)),
            registry.register("a", other.clone(), Some("kept"), Some(now), &[], id(0)),
            registry.register("mallory", mallory.clone(), None, Some(now - 10), &[], id(0)),
            registry.register("mallory", later.clone(), None, Some(now + 5), &[], id(0)),
        ];
        assert!(matches!(stolen.next(), Next::Close(CloseSignal::Revoked)));
        assert!(matches!(mallory.next(), Next::Close(CloseSignal::Revoked)));
        assert!(matches!(other.next(), Next::Idle));
        assert!(matches!(later.next(), Next::Idle));
    }
}
