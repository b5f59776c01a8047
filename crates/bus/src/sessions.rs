//! Live sessions: every open connection on every gateway, kept in Redis by
//! the gateway that holds it, so that a user can list and close their
//! sessions and servers can ask whether a user is online.
//!
//! - `{prefix}sessions:{user}`: session id -> the session as JSON.
//! - `{prefix}node-sessions:{instance}`: "user\nsession" of each session a
//!   gateway process holds: what to take back when it dies
//!   ([`crate::nodes`]).
//! - `{prefix}last-seen:{user}`: when the user's last connection ended (Unix
//!   seconds), kept [`LAST_SEEN_TTL_SECS`](crate::nodes::LAST_SEEN_TTL_SECS).

use redis::aio::ConnectionLike;
use redis::{RedisResult, Script};
use serde::{Deserialize, Serialize};

use notify_protocol::ChannelNames;

use crate::nodes::LAST_SEEN_TTL_SECS;

/// Changes per script call.
pub const MAX_CHANGES_PER_CALL: usize = 500;

/// Applies a gateway's session changes, unless the gateway is not (any
/// longer) known alive: then nothing is applied and it must register and
/// report every session again.
const RECORD: &str = r#"
local prefix, node = ARGV[1], ARGV[2]
local nodes = prefix .. 'nodes'
if not redis.call('ZSCORE', nodes, node) then return 0 end
local t = redis.call('TIME')
redis.call('ZADD', nodes, t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[3]), node)
local node_key = prefix .. 'node-sessions:' .. node
local now = t[1]
for i = 5, #ARGV, 4 do
  local op, user, session = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local member = user .. '\n' .. session
  if op == '+' then
    redis.call('HSET', prefix .. 'sessions:' .. user, session, ARGV[i + 3])
    redis.call('SADD', node_key, member)
  else
    redis.call('HDEL', prefix .. 'sessions:' .. user, session)
    redis.call('SREM', node_key, member)
    redis.call('SET', prefix .. 'last-seen:' .. user, now, 'EX', ARGV[4])
  end
end
return 1
"#;

/// One live session as listed to its user.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LiveSession {
    pub session_id: String,
    pub node: String,
    pub client_address: Option<String>,
    pub user_agent: Option<String>,
    /// RFC 3339.
    pub connected_at: String,
}

impl LiveSession {
    /// The form kept in Redis and listed.
    pub fn to_json(&self) -> String {
        // Strings only: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A change a gateway reports.
#[derive(Debug, Clone, Copy)]
pub enum SessionChange<'a> {
    /// `json` is [`LiveSession::to_json`].
    Opened {
        user: &'a str,
        session_id: &'a str,
        json: &'a str,
    },
    Closed {
        user: &'a str,
        session_id: &'a str,
    },
}

/// Whether a user is online, as servers ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPresence {
    pub connections: u64,
    /// When their last connection ended (Unix seconds), if known.
    pub last_seen: Option<u64>,
}

pub struct SessionStore {
    channels: ChannelNames,
    record: Script,
}

impl SessionStore {
    pub fn new(channels: ChannelNames) -> Self {
        Self {
            channels,
            record: Script::new(RECORD),
        }
    }

    /// Applies `changes` (at most [`MAX_CHANGES_PER_CALL`]) of `instance`
    /// and keeps it alive for `ttl_ms` more; false when it was not known
    /// (see [`crate::nodes::NodeStore::heartbeat`]) and nothing was applied.
    pub async fn record<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        instance: &str,
        ttl_ms: u64,
        changes: &[SessionChange<'_>],
    ) -> RedisResult<bool> {
        let mut call = self.record.prepare_invoke();
        call.key(self.channels.nodes())
            .arg(self.channels.script_prefix())
            .arg(instance)
            .arg(ttl_ms)
            .arg(LAST_SEEN_TTL_SECS);
        for change in changes {
            match *change {
                SessionChange::Opened {
                    user,
                    session_id,
                    json,
                } => call.arg("+").arg(user).arg(session_id).arg(json),
                SessionChange::Closed { user, session_id } => {
                    call.arg("-").arg(user).arg(session_id).arg("")
                }
            };
        }
        let applied: i64 = call.invoke_async(conn).await?;
        Ok(applied == 1)
    }

    /// The user's live sessions, oldest first.
    pub async fn list<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        user: &str,
    ) -> RedisResult<Vec<LiveSession>> {
        let values: Vec<String> = redis::cmd("HVALS")
            .arg(self.channels.sessions(user))
            .query_async(conn)
            .await?;
        let mut sessions: Vec<LiveSession> = values
            .iter()
            .filter_map(|json| serde_json::from_str(json).ok())
            .collect();
        sessions.sort_by(|a, b| {
            (&a.connected_at, &a.session_id).cmp(&(&b.connected_at, &b.session_id))
        });
        Ok(sessions)
    }

    /// Whether `session_id` is a live session of `user`.
    pub async fn exists<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        user: &str,
        session_id: &str,
    ) -> RedisResult<bool> {
        redis::cmd("HEXISTS")
            .arg(self.channels.sessions(user))
            .arg(session_id)
            .query_async(conn)
            .await
    }

    /// How many live sessions each of `users` has, in one round trip.
    pub async fn connections<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        users: &[&str],
    ) -> RedisResult<Vec<u64>> {
        let mut pipe = redis::pipe();
        for user in users {
            pipe.cmd("HLEN").arg(self.channels.sessions(user));
        }
        pipe.query_async(conn).await
    }

    /// Connections and last-seen time of each of `users`, in one round
    /// trip.
    pub async fn presence<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        users: &[&str],
    ) -> RedisResult<Vec<UserPresence>> {
        let mut pipe = redis::pipe();
        for user in users {
            pipe.cmd("HLEN").arg(self.channels.sessions(user));
            pipe.cmd("GET").arg(self.channels.last_seen(user));
        }
        let replies: Vec<(u64, Option<u64>)> = pipe.query_async(conn).await?;
        Ok(replies
            .into_iter()
            .map(|(connections, last_seen)| UserPresence {
                connections,
                last_seen,
            })
            .collect())
    }
}
