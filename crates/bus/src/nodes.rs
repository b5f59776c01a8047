//! Which gateway processes are alive, and taking back what a dead one left
//! in Redis: its share of presence ([`crate::presence`]) and its live
//! sessions ([`crate::sessions`]).
//!
//! `{prefix}nodes` is a sorted set: process -> when it is considered dead
//! (Unix ms), pushed forward by the process's heartbeat. Any live gateway
//! (and the api) reaps the processes past their time. A process is named by
//! its instance id, unique per start, so a node restarted under the same
//! name never inherits what its previous run left.

use redis::aio::ConnectionLike;
use redis::{RedisResult, Script};

use notify_protocol::ChannelNames;

use crate::presence::ADD_PRESENCE;

/// Redis's clock in ms: every expiry is set and compared by it, so nodes
/// whose clocks differ never take each other for dead.
pub(crate) const NOW_MS: &str = r#"
local function now_ms()
  local t = redis.call('TIME')
  return t[1] * 1000 + math.floor(t[2] / 1000)
end
"#;

const HEARTBEAT: &str = r#"
local nodes = ARGV[1] .. 'nodes'
local known = redis.call('ZSCORE', nodes, ARGV[2])
redis.call('ZADD', nodes, now_ms() + tonumber(ARGV[3]), ARGV[2])
if known then return 1 end
-- New, or taken for dead: whatever it reported before is gone.
redis.call('DEL', ARGV[1] .. 'presence-node:' .. ARGV[2], ARGV[1] .. 'node-sessions:' .. ARGV[2])
return 0
"#;

/// Takes back everything of the processes past their time, or of the one
/// named in ARGV[3]: presence (announcing who left) and live sessions
/// (recording when their users were last seen, kept ARGV[4] s).
const REAP: &str = r#"
local prefix = ARGV[1]
local nodes = prefix .. 'nodes'
local dead
if ARGV[3] ~= '' then
  dead = {ARGV[3]}
else
  dead = redis.call('ZRANGEBYSCORE', nodes, '-inf', '(' .. now_ms())
end
local now = redis.call('TIME')[1]
for _, node in ipairs(dead) do
  local node_key = prefix .. 'presence-node:' .. node
  local entries = redis.call('HGETALL', node_key)
  for i = 1, #entries, 2 do
    local field = entries[i]
    local cut = string.find(field, '\n', 1, true)
    if cut then
      add(prefix, string.sub(field, 1, cut - 1), string.sub(field, cut + 1), -tonumber(entries[i + 1]))
    end
  end
  redis.call('DEL', node_key)
  local sessions_key = prefix .. 'node-sessions:' .. node
  for _, member in ipairs(redis.call('SMEMBERS', sessions_key)) do
    local cut = string.find(member, '\n', 1, true)
    if cut then
      local user = string.sub(member, 1, cut - 1)
      redis.call('HDEL', prefix .. 'sessions:' .. user, string.sub(member, cut + 1))
      redis.call('SET', prefix .. 'last-seen:' .. user, now, 'EX', ARGV[4])
    end
  end
  redis.call('DEL', sessions_key)
  redis.call('ZREM', nodes, node)
end
return #dead
"#;

/// How long a user's last-seen time is kept after their last connection.
pub const LAST_SEEN_TTL_SECS: u64 = 30 * 24 * 3600;

pub struct NodeStore {
    channels: ChannelNames,
    heartbeat: Script,
    reap: Script,
}

impl NodeStore {
    pub fn new(channels: ChannelNames) -> Self {
        Self {
            channels,
            heartbeat: Script::new(&format!("{NOW_MS}{HEARTBEAT}")),
            reap: Script::new(&format!("{NOW_MS}{ADD_PRESENCE}{REAP}")),
        }
    }

    /// Keeps `instance` alive for `ttl_ms` more; false when it was not
    /// known, in which case what it reported before was cleared and it must
    /// report everything again.
    pub async fn heartbeat<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        instance: &str,
        ttl_ms: u64,
    ) -> RedisResult<bool> {
        let known: i64 = self
            .heartbeat
            .prepare_invoke()
            .arg(self.channels.prefix())
            .arg(instance)
            .arg(ttl_ms)
            .invoke_async(conn)
            .await?;
        Ok(known == 1)
    }

    /// Takes back what every process past its time left; returns how many
    /// processes.
    pub async fn reap<C: ConnectionLike + Send>(&self, conn: &mut C) -> RedisResult<u64> {
        self.reap_call(conn, "").await
    }

    /// Takes back what `instance` holds at once (it is shutting down).
    pub async fn leave<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        instance: &str,
    ) -> RedisResult<()> {
        self.reap_call(conn, instance).await.map(|_| ())
    }

    async fn reap_call<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        instance: &str,
    ) -> RedisResult<u64> {
        self.reap
            .prepare_invoke()
            .arg(self.channels.prefix())
            .arg(0)
            .arg(instance)
            .arg(LAST_SEEN_TTL_SECS)
            .invoke_async(conn)
            .await
    }

    /// Which of `instances` are alive, by Redis's clock.
    pub async fn alive<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        instances: &[String],
    ) -> RedisResult<Vec<bool>> {
        if instances.is_empty() {
            return Ok(Vec::new());
        }
        let ((secs, micros), scores): ((u64, u64), Vec<Option<f64>>) = redis::pipe()
            .cmd("TIME")
            .cmd("ZMSCORE")
            .arg(self.channels.nodes())
            .arg(instances)
            .query_async(conn)
            .await?;
        let now_ms = (secs * 1000 + micros / 1000) as f64;
        Ok(scores
            .into_iter()
            .map(|score| score.is_some_and(|expiry| expiry >= now_ms))
            .collect())
    }
}
