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

/// Takes back what the processes past their time left, or the one named
/// in ARGV[3]: presence (announcing who left) and live sessions (recording
/// when their users were last seen, kept ARGV[4] s). At most ARGV[5]
/// entries per call, so that a large dead node never holds Redis for
/// long: returns {processes finished, 1 if entries remain}.
const REAP: &str = r#"
local prefix = ARGV[1]
local nodes = prefix .. 'nodes'
local budget = tonumber(ARGV[5])
local dead
if ARGV[3] ~= '' then
  dead = {ARGV[3]}
else
  dead = redis.call('ZRANGEBYSCORE', nodes, '-inf', '(' .. now_ms())
end
local now = redis.call('TIME')[1]
local finished = 0
for _, node in ipairs(dead) do
  if budget <= 0 then break end
  -- Presence shares: scanned from the start each time, since what is
  -- taken back is deleted.
  local node_key = prefix .. 'presence-node:' .. node
  local cursor = '0'
  repeat
    local scan = redis.call('HSCAN', node_key, cursor, 'COUNT', budget)
    cursor = scan[1]
    local entries = scan[2]
    for i = 1, #entries, 2 do
      local field = entries[i]
      local cut = string.find(field, '\n', 1, true)
      if cut then
        add(prefix, string.sub(field, 1, cut - 1), string.sub(field, cut + 1), -tonumber(entries[i + 1]))
      end
      redis.call('HDEL', node_key, field)
    end
    budget = budget - #entries / 2
  until cursor == '0' or budget <= 0
  local sessions_key = prefix .. 'node-sessions:' .. node
  if budget > 0 then
    local members = redis.call('SPOP', sessions_key, budget)
    for _, member in ipairs(members) do
      local cut = string.find(member, '\n', 1, true)
      if cut then
        local user = string.sub(member, 1, cut - 1)
        redis.call('HDEL', prefix .. 'sessions:' .. user, string.sub(member, cut + 1))
        redis.call('SET', prefix .. 'last-seen:' .. user, now, 'EX', ARGV[4])
      end
    end
    budget = budget - #members
  end
  if redis.call('EXISTS', node_key) == 0 and redis.call('EXISTS', sessions_key) == 0 then
    redis.call('ZREM', nodes, node)
    finished = finished + 1
  end
end
if budget <= 0 then return {finished, 1} end
return {finished, 0}
"#;

/// Entries one reap call takes back at most.
const REAP_ENTRIES_PER_CALL: u64 = 1000;
/// Calls one reap makes at most; what is left waits for the next reap.
const MAX_REAP_CALLS: usize = 1000;

/// How long a user's last-seen time is kept after their last connection.
pub const LAST_SEEN_TTL_SECS: u64 = 30 * 24 * 3600;

pub struct NodeStore {
    channels: ChannelNames,
    publish_command: &'static str,
    heartbeat: Script,
    reap: Script,
}

impl NodeStore {
    /// `publish_command` is the bus's (see
    /// [`crate::RedisTarget::publish_command`]).
    pub fn new(channels: ChannelNames, publish_command: &'static str) -> Self {
        Self {
            channels,
            publish_command,
            heartbeat: Script::new(&format!("{NOW_MS}{HEARTBEAT}")),
            reap: Script::new(&format!(
                "local PUBLISH = ARGV[6]\n{NOW_MS}{ADD_PRESENCE}{REAP}"
            )),
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
            .key(self.channels.nodes())
            .arg(self.channels.script_prefix())
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

    /// Calls the reap script until nothing is left, each call bounded.
    async fn reap_call<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        instance: &str,
    ) -> RedisResult<u64> {
        let mut finished = 0;
        for _ in 0..MAX_REAP_CALLS {
            let (done, more): (u64, u64) = self
                .reap
                .prepare_invoke()
                .key(self.channels.nodes())
                .arg(self.channels.script_prefix())
                .arg(0)
                .arg(instance)
                .arg(LAST_SEEN_TTL_SECS)
                .arg(REAP_ENTRIES_PER_CALL)
                .arg(self.publish_command)
                .invoke_async(conn)
                .await?;
            finished += done;
            if more == 0 {
                break;
            }
        }
        Ok(finished)
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A dead process with more entries than one call takes is taken back
    /// whole, over several bounded calls.
    #[tokio::test]
    async fn a_large_dead_process_is_reaped_in_bounded_calls() {
        let pool =
            crate::build_pool(&crate::RedisTarget::Single(notify_testkit::redis_url())).unwrap();
        let names = ChannelNames::new(format!("{}:", notify_testkit::unique("reap")));
        let prefix = names.script_prefix().to_owned();
        let mut conn = pool.get().await.unwrap();
        let dead = "gw#dead";
        let mut pipe = redis::pipe();
        pipe.zadd(names.nodes(), dead, 1);
        for i in 0..1500 {
            let user = format!("u{i}");
            pipe.hset(
                format!("{prefix}presence-node:{dead}"),
                format!("space:1\n{user}"),
                1,
            );
            pipe.hset(format!("{prefix}presence:space:1"), &user, 1);
            pipe.sadd(
                format!("{prefix}node-sessions:{dead}"),
                format!("{user}\ns{i}"),
            );
            pipe.hset(names.sessions(&user), format!("s{i}"), "{}");
        }
        pipe.query_async::<()>(&mut conn).await.unwrap();

        let store = NodeStore::new(names.clone(), "PUBLISH");
        assert_eq!(store.reap(&mut conn).await.unwrap(), 1);
        let (nodes, presence, sessions, seen): (u64, u64, u64, Option<String>) = redis::pipe()
            .zcard(names.nodes())
            .hlen(format!("{prefix}presence:space:1"))
            .hlen(names.sessions("u1499"))
            .get(names.last_seen("u1499"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!((nodes, presence, sessions), (0, 0, 0));
        assert!(seen.is_some());
        assert_eq!(store.reap(&mut conn).await.unwrap(), 0);
    }
}
