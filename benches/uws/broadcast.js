// A plain WebSocket broadcast server on uWebSockets.js (npm
// @trufflesuite/uws-js-unofficial@20.30.0-unofficial.0, installed by
// `scripts/test-deps.sh --with-uws`), the reference for corecast's fan-out comparisons:
// what a publisher sends, uWS relays to every subscriber of its topic with `app.publish`.
//
//   /sub/<topic>  subscribes to <topic>; whatever it sends is published to <topic>
//   /pub/<topic>  publishes what it sends to <topic>, without subscribing
//   any other     subscribes to "all" and publishes to "all" (the classic
//                 `open: ws => ws.subscribe('all'), message: app.publish('all', m, b)`)
//
// Usage: NODE_PATH=.testenv/uws/node_modules node benches/uws/broadcast.js [--host H] [--port P]
// Port 0 picks a free port. Prints "listening on HOST:PORT" once it listens.
'use strict';

let uWS;
try {
  uWS = require('@trufflesuite/uws-js-unofficial');
} catch (e) {
  console.error('broadcast.js: uWebSockets.js is not installed: run scripts/test-deps.sh --with-uws ' +
    'and set NODE_PATH=.testenv/uws/node_modules (' + e.message + ')');
  process.exit(2);
}

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf('--' + name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
};
const host = opt('host', '127.0.0.1');
const port = Number(opt('port', '9001'));

const app = uWS.App();
app.ws('/*', {
  compression: uWS.DISABLED,
  maxPayloadLength: 64 * 1024,
  // Large enough that a subscriber behind is not skipped (publish drops past it).
  maxBackpressure: 512 * 1024 * 1024,
  closeOnBackpressureLimit: false,
  idleTimeout: 0,
  upgrade: (res, req, context) => {
    const url = req.getUrl();
    let topic = 'all';
    let subscribe = true;
    if (url.startsWith('/sub/') && url.length > 5) {
      topic = url.slice(5);
    } else if (url.startsWith('/pub/') && url.length > 5) {
      topic = url.slice(5);
      subscribe = false;
    }
    res.upgrade({ topic, subscriber: subscribe },
      req.getHeader('sec-websocket-key'),
      req.getHeader('sec-websocket-protocol'),
      req.getHeader('sec-websocket-extensions'),
      context);
  },
  open: (ws) => {
    if (ws.subscriber) {
      ws.subscribe(ws.topic);
    }
  },
  message: (ws, message, isBinary) => {
    app.publish(ws.topic, message, isBinary);
  },
});
app.any('/*', (res) => {
  res.writeStatus('404 Not Found').end('not found\n');
});
app.listen(host, port, (token) => {
  if (!token) {
    console.error('broadcast.js: cannot listen on ' + host + ':' + port);
    process.exit(1);
  }
  console.log('listening on ' + host + ':' + uWS.us_socket_local_port(token));
});
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => process.exit(0));
}
