// kill -9 of a node (VICTIM_PID, the last of NODES): users signed in only there go offline for
// watchers on the surviving node, and live subscription counts drop, within the TTL.
'use strict';
const { NODES, signedIn, client, subscribed, sdk, until, run, assert } = require('./lib');

run(async () => {
  const survivor = NODES[0];
  const victim = NODES[NODES.length - 1];
  const alice = await signedIn(survivor, 'alice', ['zed', 'yan']);
  await until(() => alice.offline.length === 1, 'alice\'s initial state');
  const zed = await signedIn(victim, 'zed');
  const yan = await signedIn(victim, 'yan');
  const yanHere = await signedIn(survivor, 'yan');
  await until(() => alice.online.length === 2, 'zed and yan online');

  const counted = [];
  const watcher = client(survivor, 'w');
  const ch = await subscribed(watcher, 'live');
  ch.bind('pusher:subscription_count', (d) => counted.push(d.subscription_count));
  const doomed = [client(victim, 'd1'), client(victim, 'd2')];
  for (const p of doomed) await subscribed(p, 'live');
  await until(() => ch.subscriptionCount === 3, 'the cluster-wide count of 3');
  const api = await (await sdk(survivor).get({ path: '/channels/live', params: { info: 'subscription_count' } })).json();
  assert.strictEqual(api.subscription_count, 3, 'the HTTP API agrees');

  process.kill(Number(process.env.VICTIM_PID), 'SIGKILL');
  const t0 = Date.now();
  await until(() => alice.offline.length === 2 && ch.subscriptionCount === 1, 'zed offline and the count down', 20000);
  const took = Date.now() - t0;
  assert.ok(took < Number(process.env.TTL_MS) + 500, `after ${took} ms`);
  assert.deepStrictEqual(alice.offline[1], ['zed'], 'yan is still signed in on the survivor');
  assert.strictEqual(counted[counted.length - 1], 1);
  for (const p of [alice.p, yanHere.p, watcher]) p.disconnect();
  void zed; void yan;
});
