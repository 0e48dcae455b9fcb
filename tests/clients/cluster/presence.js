// Presence across nodes: a user connected to several nodes is one member; member_added and
// member_removed fire once cluster-wide; the HTTP API of any node counts cluster-wide.
'use strict';
const { NODES, sdk, client, subscribed, absenceWindow, until, subscriptionCount, run, assert, collectWebhooks } = require('./lib');

const hooks = collectWebhooks(Number(process.env.HOOK_PORT));
const count = (name, channel, user) => hooks.filter((e) => e.name === name && e.channel === channel && (!user || e.user_id === user)).length;

run(async () => {
  const watcher = client(NODES[0], 'watcher');
  const w = await subscribed(watcher, 'presence-cluster');
  const added = []; const removed = [];
  w.bind('pusher:member_added', (m) => added.push(m.id));
  w.bind('pusher:member_removed', (m) => removed.push(m.id));
  // Ann on every node, Bob on the last one.
  const ann = [];
  for (const port of NODES) {
    const p = client(port, 'ann');
    const ch = await subscribed(p, 'presence-cluster');
    assert.strictEqual(ch.members.count, 2, `ann on node ${port} sees watcher and ann`);
    ann.push(p);
  }
  const bob = client(NODES[NODES.length - 1], 'bob');
  const b = await subscribed(bob, 'presence-cluster');
  assert.strictEqual(b.members.count, 3);
  assert.deepStrictEqual(Object.keys(b.members.members).sort(), ['ann', 'bob', 'watcher']);
  await until(() => added.includes('bob'), "bob's member_added");
  // Absence: a second member_added for ann (another node deciding too) would come over Redis.
  await absenceWindow(300);
  assert.deepStrictEqual(added, ['ann', 'bob'], 'member_added once per user cluster-wide');
  for (const port of NODES) {
    const info = JSON.parse(await (await sdk(port).get({ path: '/channels/presence-cluster', params: { info: 'user_count,subscription_count' } })).text());
    assert.deepStrictEqual(info, { occupied: true, user_count: 3, subscription_count: NODES.length + 2 }, `counts via node ${port}`);
    const users = JSON.parse(await (await sdk(port).get({ path: '/channels/presence-cluster/users' })).text());
    assert.deepStrictEqual(users.users.map((u) => u.id), ['ann', 'bob', 'watcher']);
    const list = JSON.parse(await (await sdk(port).get({ path: '/channels', params: { filter_by_prefix: 'presence-', info: 'user_count' } })).text());
    assert.deepStrictEqual(list, { channels: { 'presence-cluster': { user_count: 3 } } });
  }
  // Ann leaves node by node: member_removed only after her last connection.
  let connections = NODES.length + 2;
  for (const p of ann.slice(0, -1)) {
    p.disconnect();
    connections -= 1;
    await until(async () => (await subscriptionCount(NODES[0], 'presence-cluster')) === connections, 'the connection to be gone');
  }
  // Absence: a wrong member_removed is decided in Redis right after a node reports the leave.
  await absenceWindow(300);
  assert.deepStrictEqual(removed, [], 'ann still connected somewhere');
  ann[ann.length - 1].disconnect();
  await until(() => removed.includes('ann'), 'member_removed ann');
  bob.disconnect();
  await until(() => removed.includes('bob'), 'member_removed bob');
  // Absence: duplicates would come over Redis right behind.
  await absenceWindow(300);
  assert.deepStrictEqual(removed, ['ann', 'bob'], 'member_removed once per user');
  watcher.disconnect();
  await until(() => count('channel_vacated', 'presence-cluster') === 1, 'channel_vacated webhook');
  // Absence: a second node's occupancy webhooks would be in the same or the next batch.
  await absenceWindow(300);
  // Webhooks fire once for the whole cluster, whichever node saw the change.
  assert.strictEqual(count('channel_occupied', 'presence-cluster'), 1, JSON.stringify(hooks));
  assert.strictEqual(count('channel_vacated', 'presence-cluster'), 1, JSON.stringify(hooks));
  for (const user of ['ann', 'bob', 'watcher']) {
    assert.strictEqual(count('member_added', 'presence-cluster', user), 1, `member_added ${user}: ${JSON.stringify(hooks)}`);
    assert.strictEqual(count('member_removed', 'presence-cluster', user), 1, `member_removed ${user}`);
  }
});
