// Redis shut down and started again mid-test (REDIS_PORT): local delivery goes on, cross-node
// delivery resumes once the bridges reconnect, nothing is delivered twice.
'use strict';
const { execSync } = require('child_process');
const { NODES, sdk, client, subscribed, sleep, until, metric, run, assert } = require('./lib');

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
  await sleep(300);
  await server.trigger('feed', 'e', { n: 2 }); // Redis down: node 1's own subscribers still get it
  await until(() => got.a.includes(2), 'local delivery while Redis is down');
  execSync(`${process.env.REDIS_SERVER} --port ${port} --save '' --appendonly no --daemonize yes`);
  for (const p of NODES) {
    for (let i = 0; i < 200 && (await metric(p, 'corecast_cluster_connected')) !== 1; i++) await sleep(100);
    assert.strictEqual(await metric(p, 'corecast_cluster_connected'), 1, `node ${p} reconnected`);
  }
  // The pub/sub side reconnects on its own schedule: publish until node 2 hears again.
  let n = 3;
  while (!got.b.some((x) => x >= 3)) {
    await server.trigger('feed', 'e', { n: n++ });
    await sleep(300);
    if (n > 60) throw new Error('cross-node delivery did not resume');
  }
  await sleep(500);
  // Redis lost everything; node 1 registered its presence again: node 2's API sees Ann.
  let users = [];
  for (let i = 0; i < 50 && !users.includes('ann'); i++) {
    users = JSON.parse(await (await sdk(NODES[1]).get({ path: '/channels/presence-restart/users' })).text()).users.map((u) => u.id);
    await sleep(100);
  }
  assert.deepStrictEqual(users, ['ann'], 'presence re-registered after the restart');
  assert.deepStrictEqual(got.a, [...Array(n).keys()].slice(1), 'node 1 got everything once, in order');
  const unique = new Set(got.b);
  assert.strictEqual(unique.size, got.b.length, 'no duplicates on node 2');
  assert.ok(!got.b.includes(2), 'the event published during the outage is not replayed');
  a.disconnect(); b.disconnect();
});
