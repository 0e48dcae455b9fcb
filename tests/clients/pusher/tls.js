// pusher-js with forceTLS (wss://) and the official Node server SDK with useTLS (https://)
// against corecast serving TLS. Node verifies the server's certificate against the test CA
// given in NODE_EXTRA_CA_CERTS; nothing is told to skip verification.
'use strict';
const { Pusher, PusherServer, once, connected, subscribed, run, assert, PORT, KEY, SECRET, APP_ID } = require('./lib');

const server = new PusherServer({ appId: APP_ID, key: KEY, secret: SECRET, host: '127.0.0.1', port: String(PORT), useTLS: true });

function tlsClient() {
  return new Pusher(KEY, {
    wsHost: '127.0.0.1', wssPort: PORT, forceTLS: true, enabledTransports: ['ws'], cluster: 'local',
    channelAuthorization: {
      customHandler: (params, cb) => {
        try { cb(null, server.authorizeChannel(params.socketId, params.channelName)); } catch (e) { cb(e, null); }
      },
    },
  });
}

run(async () => {
  assert.ok(process.env.NODE_EXTRA_CA_CERTS, 'the test CA is given to Node');
  const p = tlsClient();
  const socketId = await connected(p);
  assert.match(socketId, /^\d+\.\d+$/);
  const url = p.connection.connection.transport.socket.url;
  assert.ok(url.startsWith('wss://'), 'pusher-js connected over TLS: ' + url);

  const pub = await subscribed(p, 'news');
  assert.ok(pub.ok, 'public subscription succeeded');
  const got = once(pub.ch, 'update');
  const res = await server.trigger('news', 'update', { headline: 'over TLS' });
  assert.strictEqual(res.status, 200);
  assert.deepStrictEqual((await got).data, { headline: 'over TLS' });

  // A private channel: authorization signed by the SDK, the event published over HTTPS.
  const priv = await subscribed(p, 'private-orders');
  assert.ok(priv.ok, 'private subscription succeeded');
  const order = once(priv.ch, 'created');
  await server.trigger('private-orders', 'created', { id: 7 });
  assert.deepStrictEqual((await order).data, { id: 7 });

  // The HTTP API's reads over HTTPS too.
  const info = await server.get({ path: '/channels/news', params: { info: 'subscription_count' } });
  assert.strictEqual(info.status, 200);
  assert.strictEqual((await info.json()).subscription_count, 1);
  p.disconnect();
});
