// Helpers for the multi-node scenarios: NODES is a comma list of the corecast ports.
'use strict';
const path = require('path');
const modules = path.join(__dirname, '../../../.testenv/node/node_modules');
const Pusher = require(path.join(modules, 'pusher-js'));
const PusherServer = require(path.join(modules, 'pusher'));
const assert = require('assert');

const NODES = process.env.NODES.split(',').map(Number);
const sdk = (port) => new PusherServer({ appId: '1', key: 'app-key', secret: 'app-secret', host: '127.0.0.1', port: String(port), useTLS: false });

function client(port, user) {
  const auth = sdk(port);
  return new Pusher('app-key', {
    wsHost: '127.0.0.1', wsPort: port, forceTLS: false, enabledTransports: ['ws'], cluster: 'local',
    channelAuthorization: { customHandler: (p, cb) => cb(null, auth.authorizeChannel(p.socketId, p.channelName, p.channelName.startsWith('presence-') ? { user_id: user } : undefined)) },
  });
}

// A pusher-js client on `port` signed in (by the official SDK) as `user` with `watchlist`,
// recording its watchlist events. Resolves once signed in.
async function signedIn(port, user, watchlist) {
  const auth = sdk(port);
  const p = new Pusher('app-key', {
    wsHost: '127.0.0.1', wsPort: port, forceTLS: false, enabledTransports: ['ws'], cluster: 'local',
    userAuthentication: {
      customHandler: (q, cb) => cb(null, auth.authenticateUser(q.socketId, watchlist ? { id: user, watchlist } : { id: user })),
    },
    channelAuthorization: { customHandler: (q, cb) => cb(null, auth.authorizeChannel(q.socketId, q.channelName)) },
  });
  const online = [];
  const offline = [];
  const log = []; // [name, user_ids] in arrival order
  p.user.watchlist.bind('online', (e) => { online.push(e.user_ids); log.push(['online', e.user_ids]); });
  p.user.watchlist.bind('offline', (e) => { offline.push(e.user_ids); log.push(['offline', e.user_ids]); });
  p.signin();
  await until(() => p.user.user_data && p.user.user_data.id === user, 'the sign-in of ' + user);
  return { p, online, offline, log };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// The only fixed waits the scenarios use, named for what they are:
// - absenceWindow: after the state was reached (never to reach it), the time anything that must
//   NOT happen (a duplicate, a late event) would have needed to show up.
// - pace: spacing a client's own messages (the client-event rate limit) or the tries of a poll
//   that has a side effect.
const absenceWindow = (ms) => sleep(ms);
const pace = (ms) => sleep(ms);

async function subscribed(p, name) {
  const ch = p.subscribe(name);
  await new Promise((resolve, reject) => {
    ch.bind('pusher:subscription_succeeded', resolve);
    ch.bind('pusher:subscription_error', reject);
    setTimeout(() => reject(new Error('subscribe timed out: ' + name)), 5000);
  });
  return ch;
}

// Polls `pred` (sync or async) every 20 ms; resolves with the time it took, fails after `ms`.
async function until(pred, what, ms = 10000) {
  const start = Date.now();
  while (Date.now() - start < ms) { if (await pred()) return Date.now() - start; await sleep(20); }
  throw new Error('timed out: ' + what);
}

// The cluster-wide subscription count of `channel`, asked of the node on `port`.
async function subscriptionCount(port, channel) {
  const r = JSON.parse(await (await sdk(port).get({ path: '/channels/' + channel, params: { info: 'subscription_count' } })).text());
  return r.subscription_count || 0;
}

async function metric(port, name) {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(name + ' ') || l.startsWith(name + '{'));
  return line ? Number(line.trim().split(/\s+/).pop()) : undefined;
}

// Starts a webhook receiver on `port` that keeps the events whose signature the official SDK
// accepts; returns the (growing) list.
function collectWebhooks(port) {
  const hooks = [];
  require('http').createServer((req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
      const hook = sdk(NODES[0]).webhook({ headers: req.headers, rawBody: body });
      if (hook.isValid()) hooks.push(...hook.getEvents());
      res.writeHead(200); res.end();
    });
  }).listen(port, '127.0.0.1');
  return hooks;
}

function run(main) {
  main().then(() => { console.log('ok'); process.exit(0); }, (e) => { console.error(e && e.stack || e); process.exit(1); });
  setTimeout(() => { console.error('scenario timed out'); process.exit(1); }, 90000).unref();
}

module.exports = {
  Pusher, PusherServer, NODES, sdk, client, signedIn, absenceWindow, pace, subscribed, until, subscriptionCount, metric,
  run, assert, collectWebhooks,
};
