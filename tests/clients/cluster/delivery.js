// Events published on any node (HTTP API via the official SDK, client events via pusher-js)
// reach subscribers on every node exactly once, in order per publisher.
'use strict';
const { NODES, sdk, client, subscribed, absenceWindow, pace, until, run, assert } = require('./lib');

run(async () => {
  const subs = [];
  for (const port of NODES) {
    for (let i = 0; i < 3; i++) {
      const p = client(port, `u-${port}-${i}`);
      const ch = await subscribed(p, 'private-cluster');
      const got = { http: [], client: [] };
      ch.bind('news', (d) => got.http.push(d.n));
      ch.bind('client-chat', (d) => got.client.push(d.n));
      subs.push({ port, p, ch, got });
    }
  }
  // Each node's HTTP API publishes 20 events; everyone gets all 60, each once, in order per node.
  for (const [i, port] of NODES.entries()) {
    const server = sdk(port);
    for (let n = 0; n < 20; n++) await server.trigger('private-cluster', 'news', { n: i * 100 + n });
  }
  // A client on the second node sends client events (within the 10/s limit).
  const sender = subs.find((s) => s.port === NODES[1]);
  for (let n = 0; n < 8; n++) { sender.ch.trigger('client-chat', { n }); await pace(120); }
  await until(() => subs.every((s) => s.got.http.length >= 60 && (s === sender || s.got.client.length >= 8)), 'every delivery');
  // Absence: a second copy of an event would come over Redis right behind the first.
  await absenceWindow(300);
  for (const s of subs) {
    for (const [i] of NODES.entries()) {
      const fromNode = s.got.http.filter((n) => Math.floor(n / 100) === i);
      assert.deepStrictEqual(fromNode, [...Array(20).keys()].map((n) => i * 100 + n), `node ${s.port}: events from node ${i}, once each, in order`);
    }
    assert.strictEqual(s.got.http.length, 60, `node ${s.port}: no duplicates`);
    assert.deepStrictEqual(s.got.client, s === sender ? [] : [...Array(8).keys()], `node ${s.port}: client events once, not echoed`);
  }
  subs.forEach((s) => s.p.disconnect());
});
