// Watchlist events across nodes with pusher-js: a user is online while any node has a
// connection signed in as them; watchers on every node get the initial state and each change
// once (tabs on several nodes count once).
'use strict';
const { NODES, signedIn, until, run, assert } = require('./lib');

run(async () => {
  const [n0, n1, n2] = NODES;
  const bob = await signedIn(n1, 'bob');
  const alice = await signedIn(n0, 'alice', ['bob', 'carol']);
  await until(() => alice.online.length === 1 && alice.offline.length === 1, 'alice\'s initial state');
  assert.deepStrictEqual([alice.online, alice.offline], [[['bob']], [['carol']]]);
  const erin = await signedIn(n2, 'erin', ['carol']);
  await until(() => erin.offline.length === 1, 'erin\'s initial state');
  assert.deepStrictEqual(erin.offline, [['carol']]);

  // Carol's first tab (node 2) makes her online everywhere; her second (node 1) changes nothing.
  const carol2 = await signedIn(n2, 'carol');
  await until(() => alice.online.length === 2 && erin.online.length === 1, 'carol online on both watchers');
  const carol1 = await signedIn(n1, 'carol');
  bob.p.disconnect();
  await until(() => alice.offline.length === 2, 'bob offline');
  carol2.p.disconnect();
  // Bob comes back on another node: a later change that every watcher must see.
  const bob2 = await signedIn(n2, 'bob');
  await until(() => alice.online.length === 3, 'bob online again');
  carol1.p.disconnect();
  await until(() => alice.offline.length === 3 && erin.offline.length === 2, 'carol offline after her last tab');
  assert.deepStrictEqual(alice.online, [['bob'], ['carol'], ['bob']]);
  assert.deepStrictEqual(alice.offline, [['carol'], ['bob'], ['carol']]);
  assert.deepStrictEqual(erin.online, [['carol']], 'one online for two tabs on two nodes');
  assert.deepStrictEqual(erin.offline, [['carol'], ['carol']]);
  for (const s of [alice, erin, bob2]) s.p.disconnect();
});
