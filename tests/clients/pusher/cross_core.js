// Subscribers on every core receive events published over HTTP and by a client on another
// core, each publisher's events in publish order.
'use strict';
const { client, server, connected, subscribed, shardOf, until, pace, run, assert } = require('./lib');

run(async () => {
  const cores = Number(process.env.CORES || 2);
  const subs = [];
  for (let i = 0; i < 24; i++) {
    const p = client();
    const sid = await connected(p);
    const s = await subscribed(p, 'private-feed');
    assert.ok(s.ok);
    const got = { http: [], client: [] };
    s.ch.bind('http-seq', (d) => got.http.push(d.n));
    s.ch.bind('client-seq', (d) => got.client.push(d.n));
    subs.push({ p, ch: s.ch, core: shardOf(sid), got });
  }
  const coresSeen = new Set(subs.map((s) => s.core));
  assert.strictEqual(coresSeen.size, cores, `subscribers on cores ${[...coresSeen]}`);

  // HTTP publisher: 200 events, each after the previous one was accepted.
  for (let n = 0; n < 200; n++) await server.trigger('private-feed', 'http-seq', { n });
  // Client publisher: the first subscriber, within the 10/s client-event limit.
  const sender = subs[0];
  for (let n = 0; n < 15; n++) {
    sender.ch.trigger('client-seq', { n });
    await pace(120);
  }
  const httpWant = [...Array(200).keys()];
  const clientWant = [...Array(15).keys()];
  await until(() => subs.every((s) => s.got.http.length >= 200 && (s === sender || s.got.client.length >= 15)),
    'every subscriber to get every event', { show: () => subs.map((s) => [s.got.http.length, s.got.client.length]) });
  for (const s of subs) {
    assert.deepStrictEqual(s.got.http, httpWant, `core ${s.core}: HTTP events complete and in order`);
    assert.deepStrictEqual(s.got.client, s === sender ? [] : clientWant, `core ${s.core}: client events in order`);
  }
  subs.forEach((s) => s.p.disconnect());
});
