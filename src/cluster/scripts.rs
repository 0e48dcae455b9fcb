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
//! - `P:u:A:nodes`    hash user → number of nodes where the user is signed in (watchlists).
//! - `P:u:A:on`       set of "user|node" pairs.
//! - `P:u:A:seq`      the app's last online/offline sequence number (it grows with Redis's
//!   clock, so it keeps growing across a Redis restart).
//! - `P:node:N:u`     set of "A|user" signed in on N.
//! - `P:sc:A:C`       hash node → subscriptions of C on that node (live subscription counts).
//! - `P:node:N:sc`    set of "A|C" N has counted subscriptions of.
//!
//! The user and count scripts publish their result on `P:bus` themselves, so every node sees
//! the changes in the order Redis made them.

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

/// A user's first connection on a node signed in, or its last one went.
/// KEYS = u:A:nodes, u:A:on, node:N:u, u:A:seq, bus; ARGV = user, node, "1"/"0", "A|user", A.
/// When that makes the user online (first node) or offline (last node) it takes the next
/// sequence number and publishes `{"k":"user",…}`. Returns {online now (0/1), sequence} (the
/// sequence as a decimal string): the user's state as of that sequence.
pub(crate) const USER: &str = r#"
local user, node, online, entry, app = ARGV[1], ARGV[2], ARGV[3] == '1', ARGV[4], ARGV[5]
local pair = user .. '|' .. node
local changed = false
if online then
  if redis.call('SADD', KEYS[2], pair) == 1 then
    redis.call('SADD', KEYS[3], entry)
    changed = redis.call('HINCRBY', KEYS[1], user, 1) == 1
  end
else
  redis.call('SREM', KEYS[3], entry)
  if redis.call('SREM', KEYS[2], pair) == 1 and redis.call('HINCRBY', KEYS[1], user, -1) <= 0 then
    redis.call('HDEL', KEYS[1], user)
    changed = true
  end
end
local seq = tonumber(redis.call('GET', KEYS[4]) or '0')
if changed then
  local t = redis.call('TIME')
  seq = math.max(seq + 1, tonumber(t[1]) * 1000000 + tonumber(t[2]))
  redis.call('SET', KEYS[4], string.format('%.0f', seq))
  redis.call('PUBLISH', KEYS[5], '{"k":"user","app":' .. cjson.encode(app) .. ',"user":' ..
    cjson.encode(user) .. ',"online":' .. (online and 'true' or 'false') .. ',"seq":' ..
    string.format('%.0f', seq) .. '}')
end
return {redis.call('HEXISTS', KEYS[1], user), string.format('%.0f', seq)}
"#;

/// Whether users are online. KEYS = u:A:nodes, u:A:seq; ARGV = users.
/// Returns {sequence (decimal string), online (0/1) per user}.
pub(crate) const USER_STATUS: &str = r#"
local out = {redis.call('GET', KEYS[2]) or '0'}
for i = 1, #ARGV do out[#out + 1] = redis.call('HEXISTS', KEYS[1], ARGV[i]) end
return out
"#;

/// A node's subscriptions of a channel. KEYS = sc:A:C, node:N:sc, bus;
/// ARGV = node, count, "A|C", A, C. Publishes the cluster's total as `{"k":"count",…}` (unless
/// no node has subscribers left) and returns it.
pub(crate) const COUNT: &str = r#"
local node, count, entry = ARGV[1], tonumber(ARGV[2]), ARGV[3]
if count > 0 then
  redis.call('HSET', KEYS[1], node, ARGV[2])
  redis.call('SADD', KEYS[2], entry)
else
  redis.call('HDEL', KEYS[1], node)
  redis.call('SREM', KEYS[2], entry)
end
local total = 0
for _, v in ipairs(redis.call('HVALS', KEYS[1])) do total = total + tonumber(v) end
if total > 0 then
  redis.call('PUBLISH', KEYS[3], '{"k":"count","app":' .. cjson.encode(ARGV[4]) .. ',"channel":' ..
    cjson.encode(ARGV[5]) .. ',"count":' .. string.format('%.0f', total) .. '}')
end
return total
"#;
