// Client events with pusher-js: relayed to the other subscribers only, data verbatim, user_id on
// presence channels, refused on public channels, rate limited.
'use strict';
const { client, server, connected, subscribed, once, until, run, assert } = require('./lib');

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
  // An echo would have been queued to a while its core handled the event, before b got it; a
  // marker published after that reaches a behind it.
  const markerA = once(pa.ch, 'marker');
  await server.trigger('private-chat', 'marker', {});
  await markerA;
  assert.ok(!echoed, 'not echoed to the sender');

  const xa = await subscribed(a, 'presence-room');
  const xb = await subscribed(b, 'presence-room');
  const fromA = once(xb.ch, 'client-hello');
  xa.ch.trigger('client-hello', 'plain string');
  const ev = await fromA;
  assert.strictEqual(ev.data, 'plain string');
  assert.strictEqual(ev.meta.user_id, 'alice', 'user_id added on presence channels');

  // Public channel: pusher:error, nothing relayed. a's next client event travels the same way
  // to b (a's core, then the ring to b's core), so it arrives after anything relayed before.
  const pubA = await subscribed(a, 'public-room');
  const pubB = await subscribed(b, 'public-room');
  let relayed = false;
  pubB.ch.bind('client-nope', () => { relayed = true; });
  const err = once(a.connection, 'error');
  pubA.ch.trigger('client-nope', {});
  const e = await err;
  assert.strictEqual(e.data.type, 'PusherError');
  const after = once(pb.ch, 'client-after');
  pa.ch.trigger('client-after', {});
  await after;
  assert.ok(!relayed, 'refused on public channels');

  // Rate limit: 10 per second per connection. A fresh sender c (a's budget is partly spent):
  // each of its 25 events is either relayed to b or refused with its own 4301.
  const c = client({ user: { user_id: 'carol' } });
  await connected(c);
  const pc = await subscribed(c, 'private-chat');
  let received = 0;
  pb.ch.bind('client-burst', () => { received++; });
  const errors = [];
  c.connection.bind('error', (x) => errors.push(x));
  for (let i = 0; i < 25; i++) pc.ch.trigger('client-burst', { i });
  const refusedCount = () => errors.filter((x) => x.data && x.data.code === 4301).length;
  await until(() => received + refusedCount() === 25, 'every event relayed or refused', { show: () => [received, refusedCount()] });
  // 10 in the burst's second; 20 if the burst spans two.
  assert.ok(received >= 10 && received <= 20, `received ${received}`);
  assert.ok(refusedCount() >= 5, 'rate limit error 4301');
  for (const p of [a, b, c]) p.disconnect();
});
