// Public, private, encrypted and cache channels with pusher-js; authorization signed by the
// official Node server SDK; events published through its HTTP client.
'use strict';
const { client, server, connected, subscribed, shardOf, clientOnCore, once, until, subscriptionCount, run, assert } = require('./lib');

run(async () => {
  const p = client();
  const socketId = await connected(p);
  assert.match(socketId, /^\d+\.\d+$/, 'socket_id has the SDKs\' form');
  // Every frame p receives, whichever channel object pusher-js still routes it to.
  const frames = [];
  p.connection.bind('message', (m) => frames.push(m));

  const pub = await subscribed(p, 'news');
  assert.ok(pub.ok, 'public subscription succeeded');
  const gotNews = once(pub.ch, 'update');
  await server.trigger('news', 'update', { headline: 'héllo' });
  assert.deepStrictEqual((await gotNews).data, { headline: 'héllo' });

  const priv = await subscribed(p, 'private-orders');
  assert.ok(priv.ok, 'private subscription succeeded');
  const gotOrder = once(priv.ch, 'created');
  await server.trigger(['private-orders', 'news'], 'created', { id: 7 });
  assert.deepStrictEqual((await gotOrder).data, { id: 7 });

  // A wrong signature is refused with pusher:subscription_error, and the connection stays.
  const bad = client({ badAuth: true });
  await connected(bad);
  const refused = await subscribed(bad, 'private-secret');
  assert.ok(refused.error, 'bad auth is refused');
  assert.strictEqual(refused.error.status, 401);
  assert.strictEqual(bad.connection.state, 'connected');
  bad.disconnect();

  // Encrypted channel: the SDK encrypts, the server relays opaque bytes, pusher-js decrypts.
  const enc = await subscribed(p, 'private-encrypted-vault');
  assert.ok(enc.ok, 'encrypted subscription succeeded');
  const gotSecret = once(enc.ch, 'secret');
  await server.trigger('private-encrypted-vault', 'secret', { pin: '1234' });
  assert.deepStrictEqual((await gotSecret).data, { pin: '1234' });

  // Cache channel: a miss first, then the last event on subscribe. Every core keeps the last
  // event; `late` subscribes once a live subscriber on its own core has seen the second event,
  // so its core has it too.
  const late = client();
  const core = shardOf(await connected(late));
  const first = await clientOnCore(core);
  const ch = first.subscribe('cache-prices');
  await once(ch, 'pusher:cache_miss');
  const prices = [];
  ch.bind('price', (d) => prices.push(d.eur));
  await server.trigger('cache-prices', 'price', { eur: 1 });
  await server.trigger('cache-prices', 'price', { eur: 2 });
  await until(() => prices.length === 2, 'the live subscriber to get both prices', { show: () => prices });
  const lateCh = late.subscribe('cache-prices');
  const cached = await once(lateCh, 'price');
  assert.deepStrictEqual(cached.data, { eur: 2 }, 'the last event is replayed');

  // Invalid channel names are refused without closing.
  const invalid = await subscribed(p, 'bad channel!');
  assert.ok(invalid.error, 'invalid name refused');
  assert.strictEqual(p.connection.state, 'connected');

  // Unsubscribe stops delivery. Once the server has dropped the subscription, one request
  // publishes to 'news' and then to a channel p still has: one core publishes both in order,
  // so had 'after' been sent to p, it would arrive before the marker.
  p.unsubscribe('news');
  await until(async () => (await subscriptionCount('news')) === 0, 'the unsubscribe to be processed');
  const marker = once(priv.ch, 'marker');
  await server.triggerBatch([
    { channel: 'news', name: 'after', data: '{}' },
    { channel: 'private-orders', name: 'marker', data: '{}' },
  ]);
  await marker;
  assert.ok(!frames.some((m) => m.channel === 'news' && m.event === 'after'), 'no delivery after unsubscribe');

  for (const c of [p, first, late]) c.disconnect();
});
