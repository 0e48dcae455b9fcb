// Connection-level errors as pusher-js and a raw WebSocket see them. MODE selects the case.
'use strict';
const path = require('path');
const { client, server, connected, subscribed, once, pace, run, assert, PORT } = require('./lib');
const WebSocket = require(path.join(__dirname, '../../../.testenv/node/node_modules/ws'));

function rawEvents(url) {
  const ws = new WebSocket(url);
  const seen = [];
  const closed = new Promise((resolve) => ws.on('close', (code) => resolve(code)));
  ws.on('message', (m) => seen.push(JSON.parse(m.toString())));
  return { ws, seen, closed };
}

// pusher-js reports a handshake refusal as {type:'WebSocketError', error:{type:'PusherError', data}}
// and a later pusher:error as {type:'PusherError', data}.
async function pusherError(p) {
  const { data: e } = await once(p.connection, 'error', 8000);
  const inner = e.error || e;
  assert.strictEqual(inner.type, 'PusherError', JSON.stringify(e));
  return inner.data.code;
}

run(async () => {
  const mode = process.env.MODE;
  if (mode === 'unknown-key') {
    const p = client({ key: 'no-such-key' });
    assert.strictEqual(await pusherError(p), 4001);
    p.disconnect();
  } else if (mode === 'quota' || mode === 'capacity') {
    const want = mode === 'quota' ? 4004 : 4100;
    const ok = [client(), client()];
    for (const p of ok) await connected(p);
    const third = client();
    assert.strictEqual(await pusherError(third), want);
    third.disconnect();
    ok.forEach((p) => p.disconnect());
  } else if (mode === 'protocol') {
    const r = rawEvents(`ws://127.0.0.1:${PORT}/app/app-key?protocol=3&client=js&version=1`);
    const code = await r.closed;
    assert.strictEqual(code, 4007);
    assert.strictEqual(r.seen[0].event, 'pusher:error');
    assert.strictEqual(r.seen[0].data.code, 4007);
  } else if (mode === 'pong-timeout') {
    // A client that never answers pusher:ping (the server runs --activity-timeout 1 --pong-timeout 1).
    const r = rawEvents(`ws://127.0.0.1:${PORT}/app/app-key?protocol=7&client=js&version=1`);
    const code = await r.closed;
    const names = r.seen.map((m) => m.event);
    assert.deepStrictEqual(names.slice(0, 2), ['pusher:connection_established', 'pusher:ping']);
    assert.strictEqual(r.seen[r.seen.length - 1].data.code, 4201);
    assert.strictEqual(code, 4201);
  } else if (mode === 'alive') {
    // pusher-js answers the server's pings (--activity-timeout 1 --pong-timeout 1): an unanswered
    // ping closes the connection within the pong timeout, so a third ping on the same connection
    // shows that the first two were answered. Events every 300 ms keep pusher-js from pinging
    // first (it pings after a second without input), so the pings come from the server.
    const p = client();
    const socketId = await connected(p);
    assert.ok((await subscribed(p, 'beat')).ok);
    const states = [];
    p.connection.bind('state_change', (s) => states.push(s.current));
    let pings = 0;
    p.connection.bind('message', (m) => { if (m.event === 'pusher:ping') pings++; });
    const deadline = Date.now() + 15000;
    while (pings < 3) {
      assert.ok(Date.now() < deadline, `only ${pings} server pings in 15 s; states ${states}`);
      await server.trigger('beat', 'tick', {});
      await pace(300);
    }
    assert.deepStrictEqual(states, [], 'the connection never left "connected"');
    assert.strictEqual(p.connection.socket_id, socketId);
    p.disconnect();
  } else {
    throw new Error('unknown MODE ' + mode);
  }
});
