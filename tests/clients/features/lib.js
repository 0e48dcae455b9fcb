// Helpers for the feature scenarios (watchlists, authorized connections, live counts, origins,
// webhook filters), run by tests/features.rs against one corecast: CORECAST_PORT is its port.
'use strict';
const pusher = require('../pusher/lib');
const { Pusher, server, assert } = pusher;

// A pusher-js client signed in (by the official SDK's authenticateUser) as `user`, with
// `watchlist` in its user data when given, on core `core` if given (connections on other
// cores are closed before they sign in). Resolves once pusher:signin_success arrived.
async function signedIn(user, watchlist, opts = {}, core = undefined) {
  const signinAs = watchlist ? { id: user, watchlist } : { id: user };
  let p;
  for (let i = 0; i < 40; i++) {
    p = pusher.client({ signinAs, ...opts });
    const id = await pusher.connected(p);
    if (core === undefined || pusher.shardOf(id) === core) break;
    p.disconnect();
    p = undefined;
  }
  if (!p) throw new Error(`no connection on core ${core}`);
  const online = [];
  const offline = [];
  // Bound before the sign-in: the initial state follows signin_success at once.
  p.user.watchlist.bind('online', (e) => online.push(e.user_ids));
  p.user.watchlist.bind('offline', (e) => offline.push(e.user_ids));
  p.signin();
  await until(() => p.user.user_data && p.user.user_data.id === user, 'the sign-in of ' + user);
  return { p, online, offline, socketId: p.connection.socket_id };
}

// Polls `pred` (sync or async) until it holds or `ms` passes (the shared pusher helper).
const { until } = pusher;

// A pusher-js client whose WebSocket handshake carries `Origin: origin` (pusher-js on Node
// sends none; its faye-websocket client takes extra headers).
function withOrigin(origin, opts = {}) {
  const Original = Pusher.Runtime.getWebSocketAPI();
  Pusher.Runtime.getWebSocketAPI = () => function OriginSocket(url) {
    return new Original(url, [], { headers: { Origin: origin } });
  };
  try {
    const p = pusher.client(opts);
    return p;
  } finally {
    setImmediate(() => { Pusher.Runtime.getWebSocketAPI = () => Original; });
  }
}

module.exports = { ...pusher, signedIn, until, withOrigin, server };
