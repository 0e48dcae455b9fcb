// Live subscription counts with pusher-js (the app has subscription_count_events): every
// subscriber of a public and a private channel learns the channel's count across both cores
// through pusher:subscription_count, rate-limited, and the count equals the HTTP API's.
'use strict';
const { client, connected, subscribed, server, until, shardOf, run, assert } = require('./lib');

async function channelCount(name) {
  const r = await server.get({ path: `/channels/${name}`, params: { info: 'subscription_count' } });
  return (await r.json()).subscription_count;
}

run(async () => {
  const intervalMs = Number(process.env.INTERVAL_S) * 1000;
  for (const name of ['live', 'private-live']) {
    const subs = [];
    const t0 = Date.now();
    const cores = new Set();
    const perCore = [0, 0];
    for (let i = 0; subs.length < 6; i++) {
      assert.ok(i < 100, 'three connections on each core');
      const p = client();
      const core = shardOf(await connected(p));
      if (perCore[core] === 3) { p.disconnect(); continue; }
      perCore[core] += 1;
      cores.add(core);
      const seen = [];
      const ch = p.subscribe(name);
      ch.bind('pusher:subscription_count', (d) => seen.push(d.subscription_count));
      await new Promise((resolve) => ch.bind('pusher:subscription_succeeded', resolve));
      subs.push({ p, ch, seen });
    }
    assert.strictEqual(cores.size, 2, 'subscribers on both cores');
    await until(() => subs.every((s) => s.ch.subscriptionCount === 6), `every subscriber of ${name} sees 6`);
    const elapsed = Date.now() - t0;
    assert.strictEqual(await channelCount(name), 6, 'the HTTP API agrees');
    // Six joins, but the first subscriber got at most one event per interval (plus the first).
    const first = subs[0].seen;
    assert.ok(first.length <= Math.ceil(elapsed / intervalMs) + 2, `${first.length} events in ${elapsed} ms`);
    assert.strictEqual(first[first.length - 1], 6);
    // Leaving lowers it for the rest.
    subs.pop().p.disconnect();
    subs.pop().p.disconnect();
    await until(() => subs.every((s) => s.ch.subscriptionCount === 4), `${name} down to 4`);
    assert.strictEqual(await channelCount(name), 4);
    subs.forEach((s) => s.p.disconnect());
  }
  // Presence channels carry no live count.
  const a = client({ user: { user_id: 'a' } });
  await connected(a);
  const pres = await subscribed(a, 'presence-live');
  let counted = false;
  pres.ch.bind('pusher:subscription_count', () => { counted = true; });
  const b = client({ user: { user_id: 'b' } });
  await connected(b);
  await subscribed(b, 'presence-live');
  await until(() => pres.ch.members.count === 2, 'b joined');
  assert.strictEqual(counted, false);
  a.disconnect(); b.disconnect();
});
