// Time online in SQLite: one row per stretch of time a user had at least one connection to
// presence-online, from corecast's member_added (first connection) to member_removed (last one
// left). Tabs and devices of one user are one member, so they are never counted twice.
'use strict';
const Database = require('better-sqlite3');

const SCHEMA = `
CREATE TABLE IF NOT EXISTS sessions (
  id         INTEGER PRIMARY KEY,
  user_id    TEXT    NOT NULL,
  started_ms INTEGER NOT NULL,           -- member_added: the webhook's time_ms
  ended_ms   INTEGER,                    -- member_removed: the webhook's time_ms; NULL while online
  estimated  INTEGER NOT NULL DEFAULT 0  -- 1: an edge was set by reconcile(); a late webhook corrects it
);
CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions (user_id, started_ms);
CREATE UNIQUE INDEX IF NOT EXISTS one_open_session ON sessions (user_id) WHERE ended_ms IS NULL;
`;

// Each user's time online between dayStart and now; sessions still open count up to now.
const TOTALS = `
SELECT user_id,
       SUM(MIN(COALESCE(ended_ms, :now), :now) - MAX(started_ms, :dayStart)) AS today_ms,
       MAX(ended_ms IS NULL) AS online
FROM sessions
WHERE started_ms < :now AND COALESCE(ended_ms, :now) > :dayStart
GROUP BY user_id
ORDER BY online DESC, today_ms DESC, user_id`;

function startOfDay(ms) {
  const d = new Date(ms);
  d.setHours(0, 0, 0, 0);
  return d.getTime();
}

function open(file) {
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.exec(SCHEMA);
  const q = {
    open: db.prepare('SELECT * FROM sessions WHERE user_id = ? AND ended_ms IS NULL'),
    last: db.prepare('SELECT * FROM sessions WHERE user_id = ? ORDER BY started_ms DESC, id DESC LIMIT 1'),
    openAll: db.prepare('SELECT * FROM sessions WHERE ended_ms IS NULL'),
    insert: db.prepare('INSERT INTO sessions (user_id, started_ms, estimated) VALUES (?, ?, ?)'),
    setStart: db.prepare('UPDATE sessions SET started_ms = ?, estimated = 0 WHERE id = ?'),
    setEnd: db.prepare('UPDATE sessions SET ended_ms = ?, estimated = ? WHERE id = ?'),
    totals: db.prepare(TOTALS),
    userTotal: db.prepare(`SELECT * FROM (${TOTALS}) WHERE user_id = :user`),
  };

  // member_added at timeMs. A repeated delivery changes nothing; a late one (after reconcile()
  // found the user already online) moves the estimated start back to the real one.
  function memberAdded(user, timeMs) {
    const open = q.open.get(user);
    if (!open) q.insert.run(user, timeMs, 0);
    else if (open.estimated && timeMs < open.started_ms) q.setStart.run(timeMs, open.id);
  }

  // member_removed at timeMs. A repeated delivery changes nothing; a late one (after reconcile()
  // closed the session at start-up) moves the estimated end back to the real one.
  function memberRemoved(user, timeMs) {
    const open = q.open.get(user);
    if (open) {
      q.setEnd.run(Math.max(timeMs, open.started_ms), 0, open.id);
      return;
    }
    const last = q.last.get(user);
    if (last && last.estimated && last.started_ms <= timeMs && timeMs < last.ended_ms) {
      q.setEnd.run(timeMs, 0, last.id);
    }
  }

  // At start-up, with the members corecast has now: close sessions of users who left while the
  // backend was away, open sessions for users who came. Both edges are estimates (now); the
  // webhooks corecast retries (for up to 280 s) correct them when they arrive.
  function reconcile(presentUsers, nowMs) {
    const present = new Set(presentUsers);
    for (const s of q.openAll.all()) {
      if (!present.has(s.user_id)) q.setEnd.run(nowMs, 1, s.id);
      present.delete(s.user_id);
    }
    for (const user of present) q.insert.run(user, nowMs, 1);
  }

  return {
    db,
    memberAdded: db.transaction(memberAdded),
    memberRemoved: db.transaction(memberRemoved),
    reconcile: db.transaction(reconcile),
    // A transaction around several calls (one webhook body).
    transaction: (fn) => db.transaction(fn)(),
    totals: (now = Date.now()) =>
      q.totals.all({ now, dayStart: startOfDay(now) }).map((r) => ({ ...r, online: !!r.online })),
    userTotal(user, now = Date.now()) {
      const r = q.userTotal.get({ now, dayStart: startOfDay(now), user });
      return r ? { ...r, online: !!r.online } : { user_id: user, today_ms: 0, online: false };
    },
  };
}

module.exports = { open, startOfDay };
