// A client's pusher:ping is answered with pusher:pong: pusher-js, set to ping after 300 ms
// without input (the server pings only after 120 s), stays on its connection, which it would
// leave after its pong timeout without an answer; a raw client sees the exact reply.
'use strict';
const path = require('path');
const { client, connected, until, run, assert, PORT } = require('./lib');
const WebSocket = require(path.join(__dirname, '../../../.testenv/node/node_modules/ws'));

run(async () => {
  const p = client({ activityTimeout: 300, pongTimeout: 2000 });
  const socketId = await connected(p);
  const states = [];
  p.connection.bind('state_change', (s) => states.push(s.current));
  let pongs = 0;
  p.connection.bind('message', (m) => { if (m.event === 'pusher:pong') pongs++; });
  await until(() => pongs >= 3, 'three pusher:pong replies', { show: () => ({ pongs, states }) });
  assert.deepStrictEqual(states, [], 'the connection never left "connected"');
  assert.strictEqual(p.connection.socket_id, socketId);
  p.disconnect();

  const ws = new WebSocket(`ws://127.0.0.1:${PORT}/app/app-key?protocol=7&client=raw&version=1`);
  const seen = [];
  ws.on('message', (m) => seen.push(m.toString()));
  await until(() => seen.length === 1, 'connection_established');
  ws.send(JSON.stringify({ event: 'pusher:ping', data: {} }));
  await until(() => seen.length === 2, 'the reply to pusher:ping', { show: () => seen });
  const pong = JSON.parse(seen[1]);
  assert.strictEqual(pong.event, 'pusher:pong', seen[1]);
  assert.ok(!('channel' in pong), seen[1]);
  ws.close();
});
