// Live subscription counts across nodes with pusher-js: every subscriber on every node sees the
// cluster's count, the same as the HTTP API's, and every change reaches all of them.
'use strict';
const { NODES, client, subscribed, sdk, until, run, assert } = require('./lib');

run(async () => {
  const subs = [];
  for (const port of NODES) {
    for (let i = 0; i < 2; i++) {
      const p = client(port, `u-${port}-${i}`);
      const ch = await subscribed(p, 'private-live');
      subs.push({ port, p, ch });
    }
  }
  const total = subs.length;
  await until(() => subs.every((s) => s.ch.subscriptionCount === total), `every subscriber sees ${total}`);
  for (const port of NODES) {
    const r = await sdk(port).get({ path: '/channels/private-live', params: { info: 'subscription_count' } });
    assert.strictEqual((await r.json()).subscription_count, total, `node ${port}'s HTTP API agrees`);
  }
  // Two subscribers of the first node leave: the others (on every node) see it.
  subs.shift().p.disconnect();
  subs.shift().p.disconnect();
  await until(() => subs.every((s) => s.ch.subscriptionCount === total - 2), `every subscriber sees ${total - 2}`);
  subs.forEach((s) => s.p.disconnect());
});
