// Client events with pusher-js: relayed to the other subscribers only, data verbatim, user_id on
// presence channels, refused on public channels, rate limited.
'use strict';
const { client, connected, subscribed, once, run, assert, sleep } = require('./lib');

run(async () => {
  const a = client({ user: { user_id: 'alice' } });
  const b = client({ user: { user_id: 'bob' } });
  await connected(a);
  await connected(b);
  const pa = await subscribed(a, 'private-chat');
  const pb = await subscribed(b, 'private-chat');
  let echoed = false;
  pa.ch.bind('client-typing', () => { echoed = true; });
  const got = once(pb.ch, 'client-typing');
  assert.ok(pa.ch.trigger('client-typing', { typing: true, text: 'ünïcode' }));
  assert.deepStrictEqual((await got).data, { typing: true, text: 'ünïcode' });
  await sleep(200);
  assert.ok(!echoed, 'not echoed to the sender');

  const xa = await subscribed(a, 'presence-room');
  const xb = await subscribed(b, 'presence-room');
  const fromA = once(xb.ch, 'client-hello');
  xa.ch.trigger('client-hello', 'plain string');
  const ev = await fromA;
  assert.strictEqual(ev.data, 'plain string');
  assert.strictEqual(ev.meta.user_id, 'alice', 'user_id added on presence channels');

  // Public channel: pusher:error, nothing relayed.
  const pubA = await subscribed(a, 'public-room');
  const pubB = await subscribed(b, 'public-room');
  let relayed = false;
  pubB.ch.bind('client-nope', () => { relayed = true; });
  const err = once(a.connection, 'error');
  pubA.ch.trigger('client-nope', {});
  const e = await err;
  assert.strictEqual(e.data.type, 'PusherError');
  await sleep(200);
  assert.ok(!relayed, 'refused on public channels');

  // Rate limit: 10 per second per connection (a fresh second first).
  await sleep(1100);
  let received = 0;
  pb.ch.bind('client-burst', () => { received++; });
  const errors = [];
  a.connection.bind('error', (x) => errors.push(x));
  for (let i = 0; i < 25; i++) pa.ch.trigger('client-burst', { i });
  await sleep(500);
  assert.ok(received >= 10 && received <= 20, `received ${received}`);
  assert.ok(errors.some((x) => x.data && x.data.code === 4301), 'rate limit error 4301');
  a.disconnect();
  b.disconnect();
});
