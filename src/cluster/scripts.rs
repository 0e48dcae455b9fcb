//! The Lua scripts that keep cluster-wide presence and occupancy in Redis. Each runs atomically,
//! so two nodes can never both see a user's first join (or last leave) as theirs.
//!
//! Keys, for prefix P, app A, channel C, node N:
//! - `P:p:A:C:info`   hash user → user_info JSON ("" when none): the members.
//! - `P:p:A:C:nodes`  hash user → number of nodes where the user has a connection here.
//! - `P:p:A:C:on`     set of "user|node" pairs.
//! - `P:o:A:C`        set of nodes with subscribers of C (occupancy).
//! - `P:node:N`       string with a TTL: node N is alive.
//! - `P:node:N:p`     set of "A|C|user" for N's presence entries (to clean up after N dies).
//! - `P:node:N:o`     set of "A|C" N occupies.
//! - `P:nodes`        set of node ids.

/// Join: KEYS = info, nodes, on, node:N:p; ARGV = user, node, info, max members, "A|C|user".
/// Returns {added (0/1), full (0/1), user, info, user, info, …} (all members after the join).
pub(crate) const JOIN: &str = r#"
local user, node, info, max, entry = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local added, full = 0, 0
if redis.call('SISMEMBER', KEYS[3], user .. '|' .. node) == 0 then
  if redis.call('HEXISTS', KEYS[1], user) == 0 and redis.call('HLEN', KEYS[1]) >= max then
    full = 1
  else
    redis.call('SADD', KEYS[3], user .. '|' .. node)
    redis.call('SADD', KEYS[4], entry)
    if redis.call('HINCRBY', KEYS[2], user, 1) == 1 then
      redis.call('HSET', KEYS[1], user, info)
      added = 1
    end
  end
end
local out = {added, full}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all do out[#out + 1] = all[i] end
return out
"#;

/// Leave: KEYS = info, nodes, on, node:N:p; ARGV = user, node, "A|C|user".
/// Returns 1 when this was the user's last node (member_removed is due).
pub(crate) const LEAVE: &str = r#"
local user, node, entry = ARGV[1], ARGV[2], ARGV[3]
redis.call('SREM', KEYS[4], entry)
if redis.call('SREM', KEYS[3], user .. '|' .. node) == 0 then return 0 end
if redis.call('HINCRBY', KEYS[2], user, -1) <= 0 then
  redis.call('HDEL', KEYS[2], user)
  redis.call('HDEL', KEYS[1], user)
  return 1
end
return 0
"#;

/// Occupancy: KEYS = o:A:C, node:N:o; ARGV = node, "1"/"0", "A|C".
/// Returns 1 when the channel became occupied (first node) or vacated (last node), else 0.
pub(crate) const OCCUPY: &str = r#"
local node, occupied, entry = ARGV[1], ARGV[2] == '1', ARGV[3]
local before = redis.call('SCARD', KEYS[1])
if occupied then
  redis.call('SADD', KEYS[1], node)
  redis.call('SADD', KEYS[2], entry)
else
  redis.call('SREM', KEYS[1], node)
  redis.call('SREM', KEYS[2], entry)
end
local after = redis.call('SCARD', KEYS[1])
if (before == 0 and after > 0) or (before > 0 and after == 0) then return 1 end
return 0
"#;
