// Redis shut down and started again mid-test (REDIS_PORT): local delivery goes on, cross-node
// delivery resumes once the bridges reconnect, nothing is delivered twice.
'use strict';
const { execSync } = require('child_process');
const { NODES, sdk, client, subscribed, absenceWindow, pace, until, metric, run, assert } = require('./lib');

run(async () => {
  const port = Number(process.env.REDIS_PORT);
  const a = client(NODES[0], 'ann'); const b = client(NODES[1], 'bob');
  await subscribed(a, 'presence-restart');
  const got = { a: [], b: [] };
  (await subscribed(a, 'feed')).bind('e', (d) => got.a.push(d.n));
  (await subscribed(b, 'feed')).bind('e', (d) => got.b.push(d.n));
  const server = sdk(NODES[0]);
  await server.trigger('feed', 'e', { n: 1 });
  await until(() => got.b.length === 1, 'cross-node delivery before');
  execSync(`redis-cli -p ${port} shutdown nosave || true`);
  for (const p of NODES) await until(async () => (await metric(p, 'corecast_cluster_connected')) === 0, `node ${p} to see Redis gone`);
  await server.trigger('feed', 'e', { n: 2 }); // Redis down: node 1's own subscribers still get it
  await until(() => got.a.includes(2), 'local delivery while Redis is down');
  execSync(`${process.env.REDIS_SERVER} --port ${port} --save '' --appendonly no --daemonize yes`);
  for (const p of NODES) await until(async () => (await metric(p, 'corecast_cluster_connected')) === 1, `node ${p} to reconnect`, 20000);
  // The pub/sub side reconnects on its own schedule: publish until node 2 hears again.
  let n = 3;
  while (!got.b.some((x) => x >= 3)) {
    await server.trigger('feed', 'e', { n: n++ });
    await pace(300);
    if (n > 60) throw new Error('cross-node delivery did not resume');
  }
  await until(() => got.a.length === n - 1, 'node 1 to get every event');
  // Absence: a replayed or duplicated event would come over Redis right behind.
  await absenceWindow(300);
  // Redis lost everything; node 1 registered its presence again: node 2's API sees Ann.
  let users = [];
  await until(async () => {
    users = JSON.parse(await (await sdk(NODES[1]).get({ path: '/channels/presence-restart/users' })).text()).users.map((u) => u.id);
    return users.includes('ann');
  }, "ann's presence on node 2", 5000).catch(() => {});
  assert.deepStrictEqual(users, ['ann'], 'presence re-registered after the restart');
  assert.deepStrictEqual(got.a, [...Array(n).keys()].slice(1), 'node 1 got everything once, in order');
  const unique = new Set(got.b);
  assert.strictEqual(unique.size, got.b.length, 'no duplicates on node 2');
  assert.ok(!got.b.includes(2), 'the event published during the outage is not replayed');
  a.disconnect(); b.disconnect();
});
