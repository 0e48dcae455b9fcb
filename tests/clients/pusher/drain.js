// Draining (SIGTERM) as Pusher clients see it: each gets pusher:error 4200 and then the close
// frame 1001, and pusher-js reconnects by itself. The test runs corecast with --node-id 1,
// waits for this script's "ready", signals it, and starts a corecast with --node-id 2 on the
// same port once the first has exited: every pusher-js client must come back on node 2, with
// its subscription, and receive what is published there.
'use strict';
const path = require('path');
const { server, subscribed, clientOnCore, until, within, run, assert, PORT } = require('./lib');
const WebSocket = require(path.join(__dirname, '../../../.testenv/node/node_modules/ws'));

const nodeOf = (socketId) => Math.floor(Number(socketId.split('.')[0]) / 1000);

run(async () => {
  // pusher-js clients on both cores, subscribed to 'news'.
  const clients = [await clientOnCore(0), await clientOnCore(1), await clientOnCore(0), await clientOnCore(1)];
  const watched = [];
  for (const p of clients) {
    const s = await subscribed(p, 'news');
    assert.ok(s.ok);
    assert.strictEqual(nodeOf(p.connection.socket_id), 1, 'on the first server');
    const w = { p, errors: [], states: [], subscribed: 0, events: [], toldAt: 0, backAt: 0 };
    p.connection.bind('error', (e) => { w.errors.push(e); if (e.data && e.data.code === 4200) w.toldAt = Date.now(); });
    p.connection.bind('state_change', (s) => { w.states.push(s.current); if (s.current === 'connected') w.backAt = Date.now(); });
    s.ch.bind('pusher:subscription_succeeded', () => { w.subscribed++; });
    s.ch.bind('after-restart', (d) => w.events.push(d));
    watched.push(w);
  }
  // A raw WebSocket client sees the exact frames.
  const raw = new WebSocket(`ws://127.0.0.1:${PORT}/app/app-key?protocol=7&client=js&version=8`);
  const rawSeen = [];
  raw.on('message', (m) => rawSeen.push(JSON.parse(m.toString())));
  const rawClosed = new Promise((resolve) => raw.on('close', (code) => resolve({ code, seen: rawSeen.length })));
  await until(() => rawSeen.length === 1, 'the raw client\'s connection_established');

  console.log('ready');
  const signalledAt = Date.now();
  const { code, seen } = await within(rawClosed, 10000, 'the raw client\'s close');
  assert.strictEqual(code, 1001, 'close frame 1001 (going away)');
  const last = rawSeen[seen - 1];
  assert.strictEqual(last.event, 'pusher:error', JSON.stringify(rawSeen));
  assert.strictEqual(last.data.code, 4200, JSON.stringify(last));

  for (const w of watched) {
    await until(() => w.errors.some((e) => e.type === 'PusherError' && e.data && e.data.code === 4200),
      'pusher-js to report pusher:error 4200', { show: () => w.errors });
  }
  // The test starts the second server once the first has exited; pusher-js comes back alone.
  for (const w of watched) {
    await until(() => w.p.connection.state === 'connected' && nodeOf(w.p.connection.socket_id) === 2 && w.subscribed >= 1,
      'pusher-js to reconnect to the second server and subscribe again', { ms: 20000, show: () => [w.states, w.p.connection.state] });
  }
  const took = watched.map((w) => w.backAt - w.toldAt);
  await server.trigger('news', 'after-restart', { n: 1 });
  for (const w of watched) await until(() => w.events.length === 1, 'the event published on the second server');
  console.log(`reconnected: ${watched.length} pusher-js clients, ${Date.now() - signalledAt} ms after the signal (each since its 4200: ${took.join(', ')} ms)`);
  for (const p of clients) p.disconnect();
});
