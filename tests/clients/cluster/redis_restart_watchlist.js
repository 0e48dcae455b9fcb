// Redis shut down and started again (REDIS_PORT): the nodes register their signed-in users in
// the new Redis and ask again about watched users, so watchlist events stay right afterwards.
'use strict';
const { execSync } = require('child_process');
const { NODES, signedIn, metric, until, run, assert } = require('./lib');

// The latest state each watched user was reported in.
function states(s) {
  const now = {};
  for (const [name, ids] of s.log) for (const id of ids) now[id] = name;
  return now;
}

run(async () => {
  const port = Number(process.env.REDIS_PORT);
  const [n0, n1] = NODES;
  const bob = await signedIn(n1, 'bob');
  const alice = await signedIn(n0, 'alice', ['bob', 'carol']);
  await until(() => states(alice).bob === 'online' && states(alice).carol === 'offline', 'the initial state');

  execSync(`redis-cli -p ${port} shutdown nosave || true`);
  const redisUp = () => { try { execSync(`redis-cli -p ${port} ping`, { stdio: 'ignore' }); return true; } catch { return false; } };
  await until(() => !redisUp(), 'Redis down');
  execSync(`${process.env.REDIS_SERVER} --port ${port} --save '' --appendonly no --daemonize yes`);
  for (const p of NODES) {
    await until(async () => (await metric(p, 'corecast_cluster_connected')) === 1, `node ${p} reconnected`, 20000);
  }
  // A sign-in after the restart reaches the watcher on the other node.
  const carol = await signedIn(n1, 'carol');
  await until(() => states(alice).carol === 'online', 'carol online after the restart', 15000);
  // Bob signed in before the restart: his node registered him again, so his leaving is seen.
  bob.p.disconnect();
  await until(() => states(alice).bob === 'offline', 'bob offline after the restart', 15000);
  assert.strictEqual(states(alice).carol, 'online');
  alice.p.disconnect();
  carol.p.disconnect();
});
