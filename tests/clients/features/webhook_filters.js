// Webhook receivers with event types, channel filters and headers (the config gives the
// three URLs on HOOK_PORT): each gets only its events, each body passes the official Node
// SDK's signature check, and the configured header arrives.
'use strict';
const http = require('http');
const { client, connected, subscribed, server, until, run, assert } = require('./lib');

const got = { all: [], presence: [], beta: [] };
const invalid = [];
const tokens = [];
http.createServer((req, res) => {
  let body = '';
  req.on('data', (d) => { body += d; });
  req.on('end', () => {
    const which = req.url.slice(1);
    const hook = server.webhook({ headers: req.headers, rawBody: body });
    if (hook.isValid()) got[which].push(...hook.getEvents()); else invalid.push(body);
    if (which === 'presence') tokens.push(req.headers['x-receiver-token']);
    res.writeHead(200); res.end();
  });
}).listen(Number(process.env.HOOK_PORT), '127.0.0.1');

const names = (list) => list.map((e) => `${e.name}:${e.channel}`).sort();

run(async () => {
  const a = client({ user: { user_id: 'a' } });
  const b = client({ user: { user_id: 'b' } });
  await connected(a);
  await connected(b);
  const room = await subscribed(a, 'presence-room');
  const other = await subscribed(b, 'presence-room');
  await subscribed(a, 'room-beta');
  await subscribed(a, 'private-x');
  const relayed = new Promise((resolve) => other.ch.bind('client-hi', resolve));
  room.ch.trigger('client-hi', { x: 1 });
  await relayed;
  a.disconnect();
  b.disconnect();
  const expectedAll = [
    'channel_occupied:presence-room', 'channel_occupied:private-x', 'channel_occupied:room-beta',
    'channel_vacated:presence-room', 'channel_vacated:private-x', 'channel_vacated:room-beta',
    'client_event:presence-room', 'member_added:presence-room', 'member_added:presence-room',
    'member_removed:presence-room', 'member_removed:presence-room',
  ];
  await until(() => got.all.length >= expectedAll.length && got.presence.length >= 4 && got.beta.length >= 2,
    'every receiver\'s events').catch((e) => { throw new Error(`${e.message}: ${JSON.stringify(got)}`); });
  assert.deepStrictEqual(names(got.all), expectedAll, 'a plain URL string gets everything');
  assert.deepStrictEqual(names(got.presence), ['member_added:presence-room', 'member_added:presence-room',
    'member_removed:presence-room', 'member_removed:presence-room']);
  assert.deepStrictEqual(names(got.beta), ['channel_occupied:room-beta', 'channel_vacated:room-beta']);
  assert.deepStrictEqual(invalid, [], 'every body passes isValid()');
  assert.ok(tokens.length > 0 && tokens.every((t) => t === 's3cret'), JSON.stringify(tokens));
});
