// Every HTTP API endpoint through the official Node server SDK, with pusher-js subscribers
// spread over the cores, plus the refusals: bad signature, stale timestamp, unknown app, size.
'use strict';
const path = require('path');
const crypto = require('crypto');
const http = require('http');
const { client, server, connected, subscribed, until, run, assert, PusherServer, PORT } = require('./lib');

async function json(resp) { return JSON.parse(await resp.text()); }

async function expectStatus(promise, status) {
  try {
    await promise;
  } catch (e) {
    assert.strictEqual(e.status, status, `expected ${status}, got ${e.status}: ${e.body}`);
    return e.body;
  }
  throw new Error(`expected HTTP ${status}, got success`);
}

// A raw signed request, to control the timestamp and body exactly.
function raw(method, p, query, body) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: PORT, method, path: p + '?' + query,
      headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body || '') } }, (res) => {
      let b = ''; res.on('data', (d) => { b += d; }); res.on('end', () => resolve({ status: res.statusCode, body: b }));
    });
    req.on('error', reject); req.end(body || '');
  });
}

function sign(method, p, params, body) {
  const all = { auth_key: 'app-key', auth_version: '1.0', ...params };
  if (body) all.body_md5 = crypto.createHash('md5').update(body).digest('hex');
  const q = Object.keys(all).sort().map((k) => `${k}=${all[k]}`).join('&');
  const sig = crypto.createHmac('sha256', 'app-secret').update(`${method}\n${p}\n${q}`).digest('hex');
  return `${q}&auth_signature=${sig}`;
}

run(async () => {
  // Subscribers: two users in a presence channel (three connections), a public and a cache channel.
  const ann1 = client({ user: { user_id: 'ann', user_info: { n: 1 } } });
  const ann2 = client({ user: { user_id: 'ann', user_info: { n: 1 } } });
  const bob = client({ user: { user_id: 'bob' } });
  for (const p of [ann1, ann2, bob]) { await connected(p); assert.ok((await subscribed(p, 'presence-room')).ok); }
  assert.ok((await subscribed(ann1, 'news')).ok);
  assert.ok((await subscribed(bob, 'news')).ok);
  assert.ok((await subscribed(bob, 'private-news')).ok);

  // GET /channels (every core answers; polled until each has seen its subscriptions)
  const names = async () => Object.keys((await json(await server.get({ path: '/channels' }))).channels).sort();
  await until(async () => JSON.stringify(await names()) === JSON.stringify(['news', 'presence-room', 'private-news']),
    'the three occupied channels', { show: names });
  let r;
  r = await json(await server.get({ path: '/channels', params: { filter_by_prefix: 'presence-', info: 'user_count' } }));
  assert.deepStrictEqual(r, { channels: { 'presence-room': { user_count: 2 } } });
  await expectStatus(server.get({ path: '/channels', params: { info: 'user_count' } }), 400);

  // GET /channels/{name}
  r = await json(await server.get({ path: '/channels/presence-room', params: { info: 'user_count,subscription_count' } }));
  assert.deepStrictEqual(r, { occupied: true, user_count: 2, subscription_count: 3 });
  r = await json(await server.get({ path: '/channels/news', params: { info: 'subscription_count' } }));
  assert.deepStrictEqual(r, { occupied: true, subscription_count: 2 });
  r = await json(await server.get({ path: '/channels/empty' }));
  assert.deepStrictEqual(r, { occupied: false });
  await expectStatus(server.get({ path: '/channels/news', params: { info: 'user_count' } }), 400);
  r = await json(await server.get({ path: '/channels/cache-c', params: { info: 'cache' } }));
  assert.deepStrictEqual(r, { occupied: false, cache: null });
  await server.trigger('cache-c', 'price', '42');
  r = await json(await server.get({ path: '/channels/cache-c', params: { info: 'cache' } }));
  assert.strictEqual(r.cache.data, '42');
  assert.ok(r.cache.ttl > 0 && r.cache.ttl <= 1800);

  // GET /channels/{name}/users
  r = await json(await server.get({ path: '/channels/presence-room/users' }));
  assert.deepStrictEqual(r, { users: [{ id: 'ann' }, { id: 'bob' }] });
  await expectStatus(server.get({ path: '/channels/news/users' }), 400);

  // POST /events with info; POST /batch_events with and without info
  r = await json(await server.trigger(['presence-room', 'news'], 'e', { x: 1 }, { info: 'subscription_count' }));
  assert.deepStrictEqual(r, { channels: { 'presence-room': { subscription_count: 3 }, news: { subscription_count: 2 } } });
  r = await json(await server.trigger('presence-room', 'e', 'x', { info: 'user_count,subscription_count' }));
  assert.deepStrictEqual(r, { channels: { 'presence-room': { user_count: 2, subscription_count: 3 } } });
  r = await json(await server.triggerBatch([{ channel: 'news', name: 'a', data: '1' }, { channel: 'news', name: 'b', data: '2' }]));
  assert.deepStrictEqual(r, {});
  r = await json(await server.triggerBatch([
    { channel: 'news', name: 'a', data: '1' },
    { channel: 'presence-room', name: 'b', data: '2', info: 'user_count' },
  ]));
  assert.deepStrictEqual(r, { batch: [{}, { user_count: 2 }] });
  const eleven = Array.from({ length: 11 }, (_, i) => ({ channel: 'news', name: 'n', data: String(i) }));
  await expectStatus(server.triggerBatch(eleven), 400);

  // POST /users/{id}/terminate_connections: only connections signed in as that user go.
  const signedIn = client({ signinAs: { id: 'term-me' } });
  await connected(signedIn);
  signedIn.signin();
  await until(() => signedIn.user.user_data, 'pusher:signin_success');
  let closed = false;
  signedIn.connection.bind('disconnected', () => { closed = true; });
  r = await json(await server.terminateUserConnections('term-me'));
  assert.deepStrictEqual(r, {});
  await until(() => closed, 'the signed-in connection to be terminated', { ms: 3000 });
  assert.strictEqual(ann1.connection.state, 'connected');

  // Refusals.
  const wrongSecret = new PusherServer({ appId: '1', key: 'app-key', secret: 'wrong', host: '127.0.0.1', port: String(PORT), useTLS: false });
  await expectStatus(wrongSecret.trigger('news', 'e', {}), 401);
  const unknownApp = new PusherServer({ appId: '999', key: 'app-key', secret: 'app-secret', host: '127.0.0.1', port: String(PORT), useTLS: false });
  await expectStatus(unknownApp.trigger('news', 'e', {}), 404);
  await expectStatus(server.trigger('news', 'e', 'x'.repeat(10 * 1024 + 1)), 413);
  const body = JSON.stringify({ name: 'e', channel: 'news', data: '{}' });
  // Clearly outside the ±600 s window (the server reads its clock in whole seconds).
  const stale = Math.floor(Date.now() / 1000) - 610;
  let res = await raw('POST', '/apps/1/events', sign('POST', '/apps/1/events', { auth_timestamp: stale }, body), body);
  assert.strictEqual(res.status, 401, res.body);
  assert.match(res.body, /Timestamp expired/);
  const fresh = Math.floor(Date.now() / 1000);
  res = await raw('POST', '/apps/1/events', sign('POST', '/apps/1/events', { auth_timestamp: fresh }, body), body);
  assert.strictEqual(res.status, 200, res.body);
  const big = JSON.stringify({ name: 'e', channel: 'news', data: 'x'.repeat(150 * 1024) });
  res = await raw('POST', '/apps/1/events', sign('POST', '/apps/1/events', { auth_timestamp: fresh }, big), big);
  assert.strictEqual(res.status, 413, 'body over the 100 KiB limit');

  for (const p of [ann1, ann2, bob]) p.disconnect();
});
