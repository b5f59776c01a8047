//! Who is subscribed to presence topics, across every gateway, kept in
//! Redis so that any node (and the api) can answer, and so that a node that
//! dies takes its entries with it.
//!
//! - `{prefix}presence:{topic}`: user -> connections on all nodes.
//! - `{prefix}presence-node:{node}`: "topic\nuser" -> connections on that
//!   node: what to take back when it dies ([`crate::nodes`]).
//!
//! Every change runs as one Lua script, so the per-topic totals and the
//! per-node shares never disagree, and the script itself publishes
//! `joined` when a user's total leaves zero and `left` when it returns to
//! zero: nodes racing on the same user cannot both announce, or neither.

use redis::aio::ConnectionLike;
use redis::{RedisResult, Script};

use notify_protocol::ChannelNames;

use crate::nodes::NodeStore;

/// Changes per script call: bounds how long one call holds Redis.
pub const MAX_CHANGES_PER_CALL: usize = 500;

/// Lua: `add(prefix, topic, user, change)`, shared with the reaping of
/// dead nodes. `PUBLISH` is the publish command (SPUBLISH on a cluster):
/// announcements go on the presence channel, which lives in the scripts'
/// slot, and every gateway hands them to the topic's local subscribers.
pub(crate) const ADD_PRESENCE: &str = r#"
local function announce(prefix, topic, kind, user)
  local frame = '{"type":"presence","topic":' .. cjson.encode(topic) ..
    ',"' .. kind .. '":' .. cjson.encode(user) .. '}'
  redis.call(PUBLISH, prefix .. 'presence', frame)
end

-- Adds `change` to the user's total in the topic, announcing a first
-- arrival or a last departure.
local function add(prefix, topic, user, change)
  local key = prefix .. 'presence:' .. topic
  local total = redis.call('HINCRBY', key, user, change)
  if total <= 0 then
    redis.call('HDEL', key, user)
    if total - change > 0 then announce(prefix, topic, 'left', user) end
  elseif total - change <= 0 then
    announce(prefix, topic, 'joined', user)
  end
end
"#;

const REPORT: &str = r#"
local prefix, node = ARGV[1], ARGV[2]
local nodes = prefix .. 'nodes'
-- A node its peers took for dead must report everything again.
if not redis.call('ZSCORE', nodes, node) then return 0 end
local t = redis.call('TIME')
redis.call('ZADD', nodes, t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[3]), node)
local node_key = prefix .. 'presence-node:' .. node
-- Counts, not changes: a call that timed out on the client but ran is
-- harmless to repeat.
for i = 5, #ARGV, 3 do
  local topic, user = ARGV[i], ARGV[i + 1]
  local field = topic .. '\n' .. user
  local before = tonumber(redis.call('HGET', node_key, field) or '0')
  local after = tonumber(ARGV[i + 2])
  if after < 0 then after = 0 end
  if after == 0 then
    redis.call('HDEL', node_key, field)
  else
    redis.call('HSET', node_key, field, after)
  end
  if after ~= before then add(prefix, topic, user, after - before) end
end
return 1
"#;

/// One node's count of one user's connections in one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change<'a> {
    pub topic: &'a str,
    pub user: &'a str,
    pub count: i64,
}

pub struct PresenceStore {
    channels: ChannelNames,
    publish_command: &'static str,
    report: Script,
    nodes: NodeStore,
}

impl PresenceStore {
    /// `publish_command` is the bus's (see
    /// [`crate::RedisTarget::publish_command`]).
    pub fn new(channels: ChannelNames, publish_command: &'static str) -> Self {
        Self {
            channels: channels.clone(),
            report: Script::new(&format!("local PUBLISH = ARGV[4]\n{ADD_PRESENCE}{REPORT}")),
            nodes: NodeStore::new(channels.clone(), publish_command),
            publish_command,
        }
    }

    /// Sets `changes` (at most [`MAX_CHANGES_PER_CALL`]) of `node`, and
    /// keeps it alive for `ttl_ms` more. False when the node was not known
    /// (never registered, or reaped): nothing was applied, and the node
    /// must register with [`NodeStore::heartbeat`] and report in full.
    pub async fn report<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        node: &str,
        ttl_ms: u64,
        changes: &[Change<'_>],
    ) -> RedisResult<bool> {
        let mut call = self.report.prepare_invoke();
        // KEYS[1] routes the call to the shared slot's node on a cluster.
        call.key(self.channels.nodes())
            .arg(self.channels.script_prefix())
            .arg(node)
            .arg(ttl_ms)
            .arg(self.publish_command);
        for change in changes {
            call.arg(change.topic).arg(change.user).arg(change.count);
        }
        let applied: i64 = call.invoke_async(conn).await?;
        Ok(applied == 1)
    }

    /// The users in `topic` with their connections, sorted by user id,
    /// after removing dead nodes' entries.
    pub async fn list<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
        topic: &str,
    ) -> RedisResult<Vec<(String, u64)>> {
        self.nodes.reap(conn).await?;
        let mut users: Vec<(String, u64)> = redis::cmd("HGETALL")
            .arg(self.channels.presence(topic))
            .query_async(conn)
            .await?;
        users.sort_unstable();
        Ok(users)
    }
}
