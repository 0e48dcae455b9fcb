// Watchlist events with pusher-js on one node with two cores: the initial state after
// sign-in, then online/offline as users' tabs (on either core) come and go.
'use strict';
const { signedIn, until, shardOf, run, assert } = require('./lib');

// Signs `user` in on `core`.
async function signedInOn(user, core, watchlist) {
  const s = await signedIn(user, watchlist, {}, core);
  assert.strictEqual(shardOf(s.socketId), core);
  return s;
}

const flat = (lists) => lists.flat().sort();

run(async () => {
  const bob = await signedInOn('bob', 1);
  const alice = await signedInOn('alice', 0, ['bob', 'carol', 'dave']);
  // The initial state: one online and one offline event.
  await until(() => alice.online.length === 1 && alice.offline.length === 1, 'the initial state');
  assert.deepStrictEqual(alice.online, [['bob']]);
  assert.deepStrictEqual(alice.offline[0].sort(), ['carol', 'dave']);

  // Carol opens a tab on each core: one online event.
  const carol0 = await signedInOn('carol', 0);
  await until(() => alice.online.length === 2, 'carol online');
  assert.deepStrictEqual(alice.online[1], ['carol']);
  const carol1 = await signedInOn('carol', 1);
  bob.p.disconnect();
  await until(() => alice.offline.length === 2, 'bob offline');
  assert.deepStrictEqual(alice.offline[1], ['bob']);
  assert.strictEqual(alice.online.length, 2, 'carol\'s second tab changed nothing');

  // Carol's tabs close one by one: offline only after the last.
  carol0.p.disconnect();
  const dave = await signedInOn('dave', 1);
  await until(() => alice.online.length === 3, 'dave online');
  assert.deepStrictEqual(alice.online[2], ['dave']);
  assert.strictEqual(alice.offline.length, 2, 'carol is still online in her other tab');
  carol1.p.disconnect();
  await until(() => alice.offline.length === 3, 'carol offline');
  assert.deepStrictEqual(alice.offline[2], ['carol']);

  // A second watcher signing in later sees the current state.
  const erin = await signedIn('erin', ['alice', 'bob', 'carol', 'dave']);
  await until(() => erin.online.length + erin.offline.length >= 1, 'erin\'s initial state');
  await until(() => flat(erin.online).length + flat(erin.offline).length === 4, 'all four users');
  assert.deepStrictEqual(flat(erin.online), ['alice', 'dave']);
  assert.deepStrictEqual(flat(erin.offline), ['bob', 'carol']);
  // Nothing more reached alice than these changes (no event for a second tab).
  assert.deepStrictEqual(alice.online, [['bob'], ['carol'], ['dave']]);
  assert.deepStrictEqual(alice.offline.slice(1), [['bob'], ['carol']]);
  for (const s of [alice, dave, erin]) s.p.disconnect();
});
