// Presence with pusher-js: several connections per user spread over both cores;
// member_added on a user's first connection only, member_removed on its last only.
'use strict';
const { client, connected, subscribed, shardOf, once, until, absenceWindow, subscriptionCount, run, assert } = require('./lib');

const CHANNEL = 'presence-lobby';

// Opens connections for `user` until it has one on each wanted core.
async function connectionsOnCores(user, cores) {
  const byCore = new Map();
  const extra = [];
  for (let i = 0; i < 40 && byCore.size < cores.length; i++) {
    const p = client({ user: { user_id: user, user_info: { name: user.toUpperCase() } } });
    const core = shardOf(await connected(p));
    if (cores.includes(core) && !byCore.has(core)) byCore.set(core, p); else extra.push(p);
  }
  extra.forEach((p) => p.disconnect());
  assert.strictEqual(byCore.size, cores.length, `${user} reached cores ${[...byCore.keys()]}`);
  return cores.map((c) => byCore.get(c));
}

run(async () => {
  const cores = Number(process.env.CORES || 2);
  const wanted = [...Array(cores).keys()];
  const [watcher] = await connectionsOnCores('watcher', [0]);
  const w = await subscribed(watcher, CHANNEL);
  assert.strictEqual(w.ok.count, 1);

  const added = [];
  const removed = [];
  w.ch.bind('pusher:member_added', (m) => added.push(m.id));
  w.ch.bind('pusher:member_removed', (m) => removed.push(m.id));

  // Ann connects once per core; Bob once.
  const ann = await connectionsOnCores('ann', wanted);
  const [bob] = await connectionsOnCores('bob', [cores - 1]);
  const annFirst = await subscribed(ann[0], CHANNEL);
  assert.strictEqual(annFirst.ok.count, 2, 'watcher + ann');
  assert.strictEqual(annFirst.ok.me.id, 'ann');
  assert.deepStrictEqual(annFirst.ok.get('ann').info, { name: 'ANN' });
  for (const p of ann.slice(1)) {
    const again = await subscribed(p, CHANNEL);
    assert.strictEqual(again.ok.count, 2, 'a second connection does not add a member');
  }
  const b = await subscribed(bob, CHANNEL);
  assert.strictEqual(b.ok.count, 3);
  // Each subscription above waited for the channel's owner core, which sends member events in
  // the order it decides them: a member_added for a later connection of ann's would come
  // before bob's.
  await until(() => added.includes('bob'), "bob's member_added", { show: () => added });
  assert.deepStrictEqual(added, ['ann', 'bob'], 'one member_added per user');

  // Ann's connections leave one by one: member_removed only after the last.
  let connections = 1 + ann.length + 1;
  for (const p of ann.slice(0, -1)) {
    p.disconnect();
    connections -= 1;
    await until(async () => (await subscriptionCount(CHANNEL)) === connections, 'the connection to be gone');
    // Absence: the owner core decides on the leave as soon as the leaving core tells it.
    await absenceWindow(200);
    assert.deepStrictEqual(removed, [], 'ann still has a connection');
  }
  ann[ann.length - 1].unsubscribe(CHANNEL);
  await until(() => removed.includes('ann'), "ann's member_removed", { show: () => removed });
  assert.deepStrictEqual(removed, ['ann'], 'member_removed when the last connection leaves');
  assert.strictEqual(w.ch.members.count, 2);
  bob.disconnect();
  await once(w.ch, 'pusher:member_removed');
  assert.deepStrictEqual(removed, ['ann', 'bob']);
  ann[ann.length - 1].disconnect();
  watcher.disconnect();
});
