// kill -9 of a node (its pid in VICTIM_PID, port = the last of NODES): its members are removed on
// the other nodes within the heartbeat TTL, once.
'use strict';
const { NODES, client, subscribed, absenceWindow, until, run, assert, collectWebhooks } = require('./lib');

const hooks = collectWebhooks(Number(process.env.HOOK_PORT));

run(async () => {
  const survivor = client(NODES[0], 'stays');
  const s = await subscribed(survivor, 'presence-death');
  const removed = [];
  s.bind('pusher:member_removed', (m) => removed.push(m.id));
  const victimPort = NODES[NODES.length - 1];
  const doomed = [client(victimPort, 'gone-1'), client(victimPort, 'gone-2')];
  for (const p of doomed) await subscribed(p, 'presence-death');
  await until(() => s.members.count === 3, 'three members');
  process.kill(Number(process.env.VICTIM_PID), 'SIGKILL');
  const t0 = Date.now();
  await until(() => removed.length === 2, 'the dead node\'s members removed', 20000);
  const took = Date.now() - t0;
  // Within the TTL (plus the event's trip to this client).
  assert.ok(took < Number(process.env.TTL_MS) + 500, `removed after ${took} ms`);
  // Absence: a second clean-up of the same node would come at a later liveness check (every
  // quarter TTL, 750 ms): two of them.
  await absenceWindow(1500);
  assert.deepStrictEqual(removed.sort(), ['gone-1', 'gone-2'], 'once each');
  assert.strictEqual(s.members.count, 1);
  // The survivor that cleaned up sent the webhooks, once per member.
  await until(() => hooks.filter((e) => e.name === 'member_removed').length >= 2, 'member_removed webhooks');
  // Absence: a duplicate webhook would be in the same or the next batch.
  await absenceWindow(300);
  const gone = hooks.filter((e) => e.name === 'member_removed').map((e) => e.user_id).sort();
  assert.deepStrictEqual(gone, ['gone-1', 'gone-2'], JSON.stringify(hooks));
  doomed.forEach((p) => p.disconnect());
  survivor.disconnect();
});
