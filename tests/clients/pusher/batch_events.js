// POST /batch_events through the official Node SDK is all or nothing: a batch of ten with one
// invalid event (first, middle or last; a bad channel name, data over max_event_bytes, a missing
// name) is refused and none of its events reaches a subscriber; a valid batch is delivered in
// order. Every request goes over one keep-alive connection, so one core handles them in turn
// and publishes in that order: a marker published after a refused batch arrives behind
// anything that batch would have sent.
'use strict';
const http = require('http');
const { client, connected, subscribed, until, run, assert, PusherServer, PORT } = require('./lib');

run(async () => {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  let sockets = 0;
  const create = agent.createConnection.bind(agent);
  agent.createConnection = (...args) => { sockets++; return create(...args); };
  const api = new PusherServer({ appId: '1', key: 'app-key', secret: 'app-secret', host: '127.0.0.1', port: String(PORT), useTLS: false, agent });

  const got = { 'batch-a': [], 'batch-b': [] };
  for (const name of Object.keys(got)) {
    const p = client();
    await connected(p);
    const s = await subscribed(p, name);
    s.ch.bind_global((event, data) => { if (!event.startsWith('pusher')) got[name].push(event + (data && data.round !== undefined ? ':' + data.round : '')); });
  }
  const ten = (round) => Array.from({ length: 10 }, (_, i) => ({ channel: i % 2 ? 'batch-b' : 'batch-a', name: `e${i}`, data: JSON.stringify({ round }) }));
  const cases = [
    { at: 0, why: 'an invalid channel name', status: 400, event: (e) => ({ ...e, channel: 'bad channel!' }) },
    { at: 4, why: 'data over max_event_bytes', status: 413, event: (e) => ({ ...e, data: 'x'.repeat(10 * 1024 + 1) }) },
    { at: 9, why: 'no event name', status: 400, event: (e) => ({ channel: e.channel, data: e.data }) },
  ];
  for (const [round, c] of cases.entries()) {
    const batch = ten(round);
    batch[c.at] = c.event(batch[c.at]);
    let status;
    try {
      await api.triggerBatch(batch);
    } catch (e) {
      status = e.status;
    }
    assert.strictEqual(status, c.status, `a batch with ${c.why} at ${c.at}: HTTP ${status}`);
    await api.trigger(['batch-a', 'batch-b'], 'marker', { round });
    await until(() => got['batch-a'].includes(`marker:${round}`) && got['batch-b'].includes(`marker:${round}`), `marker ${round}`);
  }
  assert.deepStrictEqual(got, { 'batch-a': ['marker:0', 'marker:1', 'marker:2'], 'batch-b': ['marker:0', 'marker:1', 'marker:2'] },
    'no event of a refused batch was sent');

  // The same ten, all valid: every one, in order.
  await api.triggerBatch(ten(9));
  await until(() => got['batch-a'].length === 8 && got['batch-b'].length === 8, 'the valid batch', { show: () => got });
  assert.deepStrictEqual(got['batch-a'].slice(3), ['e0:9', 'e2:9', 'e4:9', 'e6:9', 'e8:9']);
  assert.deepStrictEqual(got['batch-b'].slice(3), ['e1:9', 'e3:9', 'e5:9', 'e7:9', 'e9:9']);
  assert.strictEqual(sockets, 1, 'every API request went over one connection (so the ordering argument holds)');
  agent.destroy();
});
