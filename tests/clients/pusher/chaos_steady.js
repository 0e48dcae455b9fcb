// The well-behaved side of tests/chaos.rs: CLIENTS pusher-js clients, each subscribed to two
// of FEEDS public channels `feed-{k}` and to `presence-chaos` (as user good-{i}), stay
// connected while misbehaving clients storm the server. The test publishes `seq` events {n}
// to every channel and finally `end` {last}. Prints "ready" once everyone is subscribed, then
// checks that every client got every channel's sequence 0..=last exactly once and in order,
// never left "connected", saw no error, and ends with exactly the good users as presence
// members (every misbehaving member removed); prints a summary line and exits 0.
'use strict';
const { client, connected, subscribed, until, run, assert } = require('./lib');

const CLIENTS = Number(process.env.CLIENTS);
const FEEDS = Number(process.env.FEEDS);
const PRESENCE = 'presence-chaos';

run(async () => {
  const good = [];
  const users = [...Array(CLIENTS).keys()].map((i) => `good-${i}`);
  for (let i = 0; i < CLIENTS; i++) {
    const p = client({ user: { user_id: users[i], user_info: { i } } });
    await connected(p);
    const g = { i, p, channels: {}, states: [], errors: [], presence: null, joins: 0, leaves: 0 };
    p.connection.bind('state_change', (s) => g.states.push(s.current));
    p.connection.bind('error', (e) => g.errors.push(e));
    for (const name of [`feed-${i % FEEDS}`, `feed-${(i + 1) % FEEDS}`, PRESENCE]) {
      const s = await subscribed(p, name);
      assert.ok(s.ok, `${users[i]} subscribed to ${name}`);
      const got = { seq: [], last: undefined };
      s.ch.bind('seq', (d) => got.seq.push(d.n));
      s.ch.bind('end', (d) => { got.last = d.last; });
      g.channels[name] = got;
      if (name === PRESENCE) {
        g.presence = s.ch;
        s.ch.bind('pusher:member_added', () => g.joins++);
        s.ch.bind('pusher:member_removed', () => g.leaves++);
      }
    }
    good.push(g);
  }
  console.log('ready');

  const all = () => good.flatMap((g) => Object.values(g.channels));
  await until(() => all().every((c) => c.last !== undefined), 'the end of every channel',
    { ms: 120000, show: () => good.map((g) => Object.entries(g.channels).map(([n, c]) => [n, c.seq.length, c.last])) });
  for (const g of good) {
    for (const [name, c] of Object.entries(g.channels)) {
      const want = [...Array(c.last + 1).keys()];
      if (JSON.stringify(c.seq) !== JSON.stringify(want)) {
        const missing = want.filter((n) => !c.seq.includes(n));
        const disorder = c.seq.findIndex((n, k) => k > 0 && n <= c.seq[k - 1]);
        assert.fail(`good-${g.i} on ${name}: ${c.seq.length} events for 0..=${c.last}; missing ${missing.slice(0, 10)}; out of order at ${disorder}`);
      }
    }
    assert.deepStrictEqual(g.states, [], `good-${g.i} never left "connected"`);
    assert.deepStrictEqual(g.errors, [], `good-${g.i} got no error`);
  }
  // Misbehaving members are removed once the server has dropped their connections.
  const members = (g) => Object.keys(g.presence.members.members).sort();
  await until(() => good.every((g) => JSON.stringify(members(g)) === JSON.stringify([...users].sort())),
    'presence to hold exactly the good users', { ms: 20000, show: () => members(good[0]) });
  const events = all().reduce((sum, c) => sum + c.seq.length, 0);
  console.log(`steady: ${CLIENTS} pusher-js clients got all ${events} events in order; member_added/removed seen by good-0: ${good[0].joins}/${good[0].leaves}`);
  for (const g of good) g.p.disconnect();
});
