// Authorized connections (the server runs with authorized_connections_timeout = TIMEOUT_S):
// pusher-js connections that neither sign in nor subscribe to a private or presence channel
// get pusher:error 4009 and are closed, and pusher-js does not reconnect them; the others stay.
'use strict';
const { client, connected, subscribed, signedIn, until, once, run, assert } = require('./lib');

run(async () => {
  const timeoutMs = Number(process.env.TIMEOUT_S) * 1000;
  const t0 = Date.now();
  const idle = client();
  const publicOnly = client();
  await connected(idle);
  await connected(publicOnly);
  assert.ok((await subscribed(publicOnly, 'news')).ok, 'a public channel does not authorize');
  const signed = await signedIn('u1');
  const priv = client();
  await connected(priv);
  assert.ok((await subscribed(priv, 'private-stuff')).ok);
  const presence = client({ user: { user_id: 'p1' } });
  await connected(presence);
  assert.ok((await subscribed(presence, 'presence-room')).ok);

  const errors = [[], []];
  [idle, publicOnly].forEach((p, i) => p.connection.bind('error', (e) => errors[i].push(e)));
  await until(() => idle.connection.state === 'disconnected' && publicOnly.connection.state === 'disconnected',
    'the unauthorized connections closed', timeoutMs + 5000);
  const took = Date.now() - t0;
  assert.ok(took >= timeoutMs - 1000, `closed after ${took} ms, not before the ${timeoutMs} ms timeout`);
  // pusher-js reports the pusher:error message and then the close with its code.
  for (const list of errors) {
    assert.ok(list.length >= 1, 'an error event');
    for (const e of list) {
      const inner = e.error || e;
      assert.strictEqual(inner.type, 'PusherError', JSON.stringify(e));
      assert.strictEqual(inner.data.code, 4009);
      assert.match(inner.data.message, /not authorized within/);
    }
  }
  // The authorized ones are still connected, past the unauthorized ones' end.
  for (const p of [signed.p, priv, presence]) assert.strictEqual(p.connection.state, 'connected');
  // pusher-js treats 4009 as "refused": it does not come back.
  const back = once(idle.connection, 'connected', 1500).then(() => true, () => false);
  assert.strictEqual(await back, false, 'no reconnection after 4009');
  for (const p of [signed.p, priv, presence]) p.disconnect();
});
