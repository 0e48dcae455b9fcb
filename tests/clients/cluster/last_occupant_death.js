// kill -9 of the only node where a channel is occupied, for an app with webhooks: a survivor sends
// member_removed and channel_vacated once, and stays a healthy cluster member two TTLs later
// (its heartbeat key is refreshed and it still delivers across nodes). NODES = survivor, observer,
// victim (last); VICTIM_PID, TTL_MS, HOOK_PORT, REDIS_PORT, SURVIVOR_NODE, PREFIX.
'use strict';
const { execFileSync } = require('child_process');
const { NODES, client, subscribed, pace, until, run, assert, collectWebhooks, sdk } = require('./lib');

const hooks = collectWebhooks(Number(process.env.HOOK_PORT));
const TTL = Number(process.env.TTL_MS);
const count = (name, channel) => hooks.filter((e) => e.name === name && e.channel === channel).length;

function heartbeatAlive() {
  const key = `${process.env.PREFIX}:node:${process.env.SURVIVOR_NODE}`;
  const out = execFileSync('redis-cli', ['-p', process.env.REDIS_PORT, 'PTTL', key]).toString().trim();
  return Number(out) > 0;
}

run(async () => {
  const victimPort = NODES[NODES.length - 1];
  const lonely = client(victimPort, 'lonely');
  await subscribed(lonely, 'presence-only-b');
  await subscribed(lonely, 'only-b');
  await until(() => count('channel_occupied', 'only-b') === 1, 'only-b occupied');
  await until(() => count('member_added', 'presence-only-b') === 1, 'member_added');
  assert.ok(heartbeatAlive(), 'the survivor heartbeats before the kill');

  process.kill(Number(process.env.VICTIM_PID), 'SIGKILL');
  await until(() => count('channel_vacated', 'only-b') >= 1, 'only-b vacated', 4 * TTL);
  await until(() => count('channel_vacated', 'presence-only-b') >= 1, 'presence-only-b vacated', 4 * TTL);
  await until(() => count('member_removed', 'presence-only-b') >= 1, 'member_removed', 4 * TTL);

  // Two TTLs later the survivor is still a member: its heartbeat key never lapses meanwhile
  // (sampled every 100 ms over the whole window).
  const t0 = Date.now();
  while (Date.now() - t0 < 2 * TTL) {
    assert.ok(heartbeatAlive(), `the survivor's heartbeat lapsed ${Date.now() - t0} ms after the clean-up`);
    await pace(100);
  }
  // ...and it still delivers to the other node.
  const watcher = client(NODES[1], 'watcher');
  const ch = await subscribed(watcher, 'after');
  const got = [];
  ch.bind('ping', (d) => got.push(d));
  await sdk(NODES[0]).trigger('after', 'ping', { n: 1 });
  await until(() => got.length === 1, 'cross-node delivery from the survivor');

  assert.strictEqual(count('channel_vacated', 'only-b'), 1, JSON.stringify(hooks));
  assert.strictEqual(count('channel_vacated', 'presence-only-b'), 1, JSON.stringify(hooks));
  assert.strictEqual(count('member_removed', 'presence-only-b'), 1, JSON.stringify(hooks));
  watcher.disconnect();
});
