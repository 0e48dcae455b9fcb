// The time-online rules of db.js: `npm test` (node's test runner).
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const timeOnline = require('./db');

const T = new Date(2026, 0, 15, 12, 0, 0).getTime(); // noon, local time
const MIN = 60_000;
const rows = (t) => t.db.prepare('SELECT user_id, started_ms, ended_ms, estimated FROM sessions ORDER BY id').all();

test('a session runs from member_added to member_removed; repeated deliveries change nothing', () => {
  const t = timeOnline.open(':memory:');
  t.memberAdded('ann', T);
  t.memberAdded('ann', T); // corecast retried a body we had stored
  t.memberRemoved('ann', T + 5 * MIN);
  t.memberRemoved('ann', T + 5 * MIN);
  assert.deepStrictEqual(rows(t), [{ user_id: 'ann', started_ms: T, ended_ms: T + 5 * MIN, estimated: 0 }]);
  assert.deepStrictEqual(t.totals(T + 10 * MIN), [{ user_id: 'ann', today_ms: 5 * MIN, online: false }]);
});

test('today counts open sessions up to now and clips sessions begun yesterday', () => {
  const t = timeOnline.open(':memory:');
  const midnight = timeOnline.startOfDay(T);
  t.memberAdded('bob', midnight - 30 * MIN);
  t.memberRemoved('bob', midnight + 10 * MIN);
  t.memberAdded('bob', T);
  t.memberAdded('cy', T - 2 * MIN);
  t.memberRemoved('cy', T - MIN);
  assert.deepStrictEqual(t.totals(T + 3 * MIN), [
    { user_id: 'bob', today_ms: 13 * MIN, online: true },
    { user_id: 'cy', today_ms: MIN, online: false },
  ]);
  assert.deepStrictEqual(t.userTotal('nobody', T), { user_id: 'nobody', today_ms: 0, online: false });
});

test('reconcile closes sessions of users gone and opens sessions for users present', () => {
  const t = timeOnline.open(':memory:');
  t.memberAdded('ann', T);
  t.memberAdded('bob', T);
  t.reconcile(['bob', 'cy'], T + 10 * MIN);
  assert.deepStrictEqual(rows(t), [
    { user_id: 'ann', started_ms: T, ended_ms: T + 10 * MIN, estimated: 1 },
    { user_id: 'bob', started_ms: T, ended_ms: null, estimated: 0 },
    { user_id: 'cy', started_ms: T + 10 * MIN, ended_ms: null, estimated: 1 },
  ]);
});

test('webhooks retried after a restart correct the estimates of reconcile', () => {
  const t = timeOnline.open(':memory:');
  t.memberAdded('ann', T);
  t.reconcile(['cy'], T + 10 * MIN); // ann left and cy came while the backend was down
  t.memberRemoved('ann', T + 4 * MIN);
  t.memberAdded('cy', T + 6 * MIN);
  assert.deepStrictEqual(rows(t), [
    { user_id: 'ann', started_ms: T, ended_ms: T + 4 * MIN, estimated: 0 },
    { user_id: 'cy', started_ms: T + 6 * MIN, ended_ms: null, estimated: 0 },
  ]);
  // Not a correction: an exact end is never moved.
  t.memberRemoved('ann', T + 2 * MIN);
  assert.strictEqual(rows(t)[0].ended_ms, T + 4 * MIN);
});
