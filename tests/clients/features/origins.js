// Origin checks with pusher-js (the app allows https://app.example.com and *.example.org):
// allowed origins connect; others get pusher:error 4009 "Origin not allowed" and pusher-js
// gives up (4009 means "refused"); the refusals show in /metrics.
'use strict';
const { withOrigin, connected, until, run, assert, PORT } = require('./lib');

async function refusal(origin) {
  const p = withOrigin(origin);
  const errors = [];
  p.connection.bind('error', (e) => errors.push(e));
  await until(() => errors.length > 0 && p.connection.state === 'disconnected', `refusal of ${origin}`);
  const inner = errors[0].error || errors[0];
  assert.strictEqual(inner.type, 'PusherError', JSON.stringify(errors[0]));
  assert.strictEqual(inner.data.code, 4009);
  assert.match(inner.data.message, /^Origin not allowed/);
  p.disconnect();
}

run(async () => {
  for (const origin of ['https://app.example.com', 'https://a.example.org', 'http://b.c.example.org:8080']) {
    const p = withOrigin(origin);
    await connected(p);
    p.disconnect();
  }
  for (const origin of ['https://evil.com', 'http://app.example.com', 'https://example.org']) {
    await refusal(origin);
  }
  const metrics = await (await fetch(`http://127.0.0.1:${PORT}/metrics`)).text();
  const line = metrics.split('\n').find((l) => l.startsWith('corecast_connections_rejected_total{reason="origin"}'));
  assert.ok(line, metrics);
  assert.strictEqual(Number(line.split(' ').pop()), 3);
});
