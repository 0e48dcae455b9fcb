// Webhook delivery, checked at receivers that verify every body with the official Node SDK's
// webhook(...).isValid(). MODE selects the case:
// - retry: the receiver at HOOK_PORT answers the batch with channel_occupied 500 twice, then
//   200: the same signed batch comes three times with a growing pause (the sender's backoff:
//   250 ms, then 500 ms), is accepted once, and never comes again.
// - hang: the app has two URLs; the one at HANG_PORT accepts requests and never answers. The
//   one at HOOK_PORT still gets each batch at once, while the hanging one holds its first.
'use strict';
const http = require('http');
const { client, server, connected, subscribed, until, run, assert, PORT } = require('./lib');

// A receiver: records {at, body, valid, events, status} per request; `answer(request)` gives the
// status, or null to never answer.
function receiver(port, answer) {
  const requests = [];
  const held = [];
  const srv = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
      const hook = server.webhook({ headers: req.headers, rawBody: body });
      const r = { at: Date.now(), body, valid: hook.isValid(), events: hook.isValid() ? hook.getEvents() : [] };
      requests.push(r);
      r.status = answer(r);
      if (r.status === null) return held.push(res);
      res.writeHead(r.status);
      res.end();
    });
  }).listen(port, '127.0.0.1');
  return { requests, close: () => { held.forEach((res) => res.destroy()); srv.close(); } };
}

const about = (r, name, channel) => r.events.some((e) => e.name === name && e.channel === channel);

async function metric(name) {
  const text = await (await fetch(`http://127.0.0.1:${PORT}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(name + ' '));
  return line ? Number(line.split(' ')[1]) : undefined;
}

async function retry() {
  let failures = 0;
  const hooks = receiver(Number(process.env.HOOK_PORT), (r) => (about(r, 'channel_occupied', 'retry-me') && failures++ < 2 ? 500 : 200));
  const p = client();
  await connected(p);
  assert.ok((await subscribed(p, 'retry-me')).ok);
  const occupied = () => hooks.requests.filter((r) => about(r, 'channel_occupied', 'retry-me'));
  await until(() => occupied().some((r) => r.status === 200), 'the batch to be accepted', { show: () => hooks.requests });
  // A later batch of the same URL: its delivery thread takes batches in order, so once this one
  // came, the accepted batch is done with.
  p.unsubscribe('retry-me');
  await until(() => hooks.requests.some((r) => about(r, 'channel_vacated', 'retry-me')), 'the next batch (channel_vacated)');

  const attempts = occupied();
  assert.deepStrictEqual(attempts.map((r) => r.status), [500, 500, 200], 'two failures, then accepted once');
  assert.ok(attempts.every((r) => r.valid), 'every attempt carries a valid signature');
  assert.ok(attempts.every((r) => r.body === attempts[0].body), 'each retry is the same signed batch');
  const gaps = [attempts[1].at - attempts[0].at, attempts[2].at - attempts[1].at];
  assert.ok(gaps[0] >= 240 && gaps[1] >= 490 && gaps[1] > gaps[0], `backoff 250 ms then 500 ms; the pauses were ${gaps} ms`);
  assert.ok(gaps[1] < 5000, `retried within seconds: ${gaps} ms`);
  assert.ok(hooks.requests.every((r) => r.valid), 'every webhook is valid');
  // The sender counts an attempt once it has the answer.
  await until(async () => (await metric('corecast_webhooks_sent_total')) === 2, 'webhooks_sent_total 2 (the accepted batch and the next one)');
  assert.strictEqual(await metric('corecast_webhooks_failed_total'), 2);
  console.log(`backoff pauses: ${gaps.join(' ms, ')} ms`);
  p.disconnect();
  hooks.close();
}

async function hang() {
  const hanging = receiver(Number(process.env.HANG_PORT), () => null);
  const healthy = receiver(Number(process.env.HOOK_PORT), () => 200);
  const p = client();
  await connected(p);
  const latencies = [];
  for (const channel of ['first', 'second', 'third']) {
    const asked = Date.now();
    assert.ok((await subscribed(p, channel)).ok);
    await until(() => healthy.requests.some((r) => about(r, 'channel_occupied', channel)), `channel_occupied ${channel} at the healthy URL`);
    latencies.push(healthy.requests.find((r) => about(r, 'channel_occupied', channel)).at - asked);
  }
  // A shared queue would hold the second batch behind the first one's 5 s attempt at the
  // hanging URL.
  assert.ok(latencies.every((ms) => ms < 2000), `healthy deliveries took ${latencies} ms`);
  assert.strictEqual(hanging.requests.length, 1, 'the hanging URL still holds its first request');
  assert.ok(healthy.requests.every((r) => r.valid) && hanging.requests[0].valid, 'valid signatures');
  console.log(`healthy URL latencies while the other hangs: ${latencies.join(', ')} ms`);
  p.disconnect();
  hanging.close();
  healthy.close();
}

run(async () => {
  if (process.env.MODE === 'retry') await retry();
  else if (process.env.MODE === 'hang') await hang();
  else throw new Error('unknown MODE ' + process.env.MODE);
});
