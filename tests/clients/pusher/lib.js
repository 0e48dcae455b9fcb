// Shared helpers for the pusher-js integration scenarios. Each scenario is a script run by
// tests/pusher_clients.rs against a real corecast: it exits 0 when every assertion holds and
// prints the failed assertion otherwise.
'use strict';
const path = require('path');
const assert = require('assert');
const modules = path.join(__dirname, '../../../.testenv/node/node_modules');
const Pusher = require(path.join(modules, 'pusher-js'));
const PusherServer = require(path.join(modules, 'pusher'));

const PORT = Number(process.env.CORECAST_PORT);
const KEY = process.env.APP_KEY || 'app-key';
const SECRET = process.env.APP_SECRET || 'app-secret';
const APP_ID = process.env.APP_ID || '1';
// A 32-byte master key for encrypted channels (the server never sees it).
const MASTER_KEY = Buffer.alloc(32, 7).toString('base64');

const server = new PusherServer({
  appId: APP_ID, key: KEY, secret: SECRET, host: '127.0.0.1', port: String(PORT), useTLS: false,
  encryptionMasterKeyBase64: MASTER_KEY,
});

// A pusher-js client whose auth endpoints are the official server SDK, in process.
function client(opts = {}) {
  const user = opts.user || { user_id: 'u' + Math.floor(Math.random() * 1e9) };
  return new Pusher(opts.key || KEY, {
    wsHost: '127.0.0.1', wsPort: PORT, forceTLS: false, enabledTransports: ['ws'], cluster: 'local',
    activityTimeout: opts.activityTimeout, pongTimeout: opts.pongTimeout,
    channelAuthorization: {
      customHandler: (params, cb) => {
        if (opts.badAuth) return cb(null, { auth: KEY + ':' + '0'.repeat(64) });
        try {
          const presence = params.channelName.startsWith('presence-');
          cb(null, server.authorizeChannel(params.socketId, params.channelName, presence ? user : undefined));
        } catch (e) { cb(e, null); }
      },
    },
    userAuthentication: {
      customHandler: (params, cb) => {
        try { cb(null, server.authenticateUser(params.socketId, opts.signinAs || { id: 'user-1' })); } catch (e) { cb(e, null); }
      },
    },
  });
}

function timeout(ms, what) {
  return new Promise((_, reject) => setTimeout(() => reject(new Error('timed out waiting for ' + what)), ms));
}

// Resolves as `promise` does, or fails naming `what` after `ms`.
const within = (promise, ms, what) => Promise.race([promise, timeout(ms, what)]);

// Resolves with the first emission of `event` on a pusher-js emitter (channel, connection, user).
function once(emitter, event, ms = 5000) {
  return Promise.race([new Promise((resolve) => {
    const handler = (data, meta) => { emitter.unbind(event, handler); resolve({ data, meta }); };
    emitter.bind(event, handler);
  }), timeout(ms, event)]);
}

async function connected(p) {
  if (p.connection.state !== 'connected') await once(p.connection, 'connected');
  return p.connection.socket_id;
}

async function subscribed(p, name) {
  const ch = p.subscribe(name);
  const result = await Promise.race([
    once(ch, 'pusher:subscription_succeeded').then((r) => ({ ok: r.data })),
    once(ch, 'pusher:subscription_error').then((r) => ({ error: r.data })),
  ]);
  return { ch, ...result };
}

// The core a socket lives on: socket ids are `node*1000+core . connection`.
function shardOf(socketId) { return Number(socketId.split('.')[0]) % 1000; }

// A connected client on core `core` (the kernel spreads connections over the cores' listeners).
async function clientOnCore(core, opts = {}) {
  for (let i = 0; i < 40; i++) {
    const p = client(opts);
    if (shardOf(await connected(p)) === core) return p;
    p.disconnect();
  }
  throw new Error(`no connection landed on core ${core} in 40 tries`);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Polls `pred` (sync or async) every 20 ms until it returns a truthy value, and returns that;
// after `ms` it fails naming `what`, with `show()` describing the state last seen.
async function until(pred, what, { ms = 10000, show } = {}) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${ms} ms waiting for ${what}${show ? '; seen: ' + JSON.stringify(await show()) : ''}`);
    }
    await sleep(20);
  }
}

// The only fixed waits the scenarios use, named for what they are:
// - absenceWindow: after the state was reached (never to reach it), the time anything that must
//   NOT happen (a duplicate, an echo, a late event) would have needed to show up.
// - pace: spacing a client's own messages (the client-event rate limit).
const absenceWindow = (ms) => sleep(ms);
const pace = (ms) => sleep(ms);

// The connection-wide subscription count of `channel` (0 when unoccupied), over the HTTP API.
async function subscriptionCount(channel) {
  const r = JSON.parse(await (await server.get({ path: '/channels/' + channel, params: { info: 'subscription_count' } })).text());
  return r.subscription_count || 0;
}

function run(main) {
  main().then(() => { console.log('ok'); process.exit(0); }, (e) => { console.error(e && e.stack || e); process.exit(1); });
  setTimeout(() => { console.error('scenario timed out'); process.exit(1); }, Number(process.env.SCENARIO_TIMEOUT_MS || 60000)).unref();
}

module.exports = {
  Pusher, PusherServer, server, client, once, within, connected, subscribed, shardOf, clientOnCore, until, absenceWindow, pace, subscriptionCount,
  run, assert, PORT, KEY, SECRET, APP_ID,
};
