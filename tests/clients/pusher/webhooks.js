// Webhooks checked by the official Node SDK's helper (pusher.webhook(...).isValid()):
// occupancy once for the whole server, presence members, client events, cache misses.
'use strict';
const http = require('http');
const { client, server, connected, subscribed, until, absenceWindow, run, assert } = require('./lib');

const HOOK_PORT = Number(process.env.HOOK_PORT);
const events = [];
const invalid = [];
http.createServer((req, res) => {
  let body = '';
  req.on('data', (d) => { body += d; });
  req.on('end', () => {
    const hook = server.webhook({ headers: req.headers, rawBody: body });
    if (hook.isValid()) events.push(...hook.getEvents()); else invalid.push(body);
    res.writeHead(200); res.end();
  });
}).listen(HOOK_PORT, '127.0.0.1');

const waitFor = (pred, what) => until(pred, `webhook ${what}`, { ms: 5000, show: () => events });
const has = (name, channel, extra = {}) => events.some((e) => e.name === name && e.channel === channel
  && Object.entries(extra).every(([k, v]) => JSON.stringify(e[k]) === JSON.stringify(v)));

run(async () => {
  // Several subscribers of one channel on both cores: channel_occupied only once.
  const subs = [];
  for (let i = 0; i < 8; i++) {
    const p = client({ user: { user_id: 'w' + i } });
    await connected(p);
    assert.ok((await subscribed(p, 'private-hooks')).ok);
    subs.push(p);
  }
  await waitFor(() => has('channel_occupied', 'private-hooks'), 'channel_occupied');
  const a = client({ user: { user_id: 'alice' } });
  await connected(a);
  const pa = await subscribed(a, 'presence-hooks');
  await waitFor(() => has('member_added', 'presence-hooks', { user_id: 'alice' }), 'member_added');
  const b = client({ user: { user_id: 'bob' } });
  await connected(b);
  await subscribed(b, 'presence-hooks');
  pa.ch.trigger('client-wave', { hi: true });
  await waitFor(() => has('client_event', 'presence-hooks', { event: 'client-wave', data: { hi: true }, user_id: 'alice' }), 'client_event');
  const ev = events.find((e) => e.name === 'client_event');
  assert.strictEqual(ev.socket_id, a.connection.socket_id);
  const c = client();
  await connected(c);
  c.subscribe('cache-hooks');
  await waitFor(() => has('cache_miss', 'cache-hooks'), 'cache_miss');
  b.disconnect();
  await waitFor(() => has('member_removed', 'presence-hooks', { user_id: 'bob' }), 'member_removed');
  subs.forEach((p) => p.disconnect());
  await waitFor(() => has('channel_vacated', 'private-hooks'), 'channel_vacated');
  // Absence: a second occupied/vacated pair (another core's view) would follow within a batch.
  await absenceWindow(300);
  assert.strictEqual(events.filter((e) => e.name === 'channel_occupied' && e.channel === 'private-hooks').length, 1);
  assert.strictEqual(events.filter((e) => e.name === 'channel_vacated' && e.channel === 'private-hooks').length, 1);
  assert.deepStrictEqual(invalid, [], 'every webhook passes isValid()');
  a.disconnect(); c.disconnect();
});
