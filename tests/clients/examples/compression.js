// Headless Chromium with pusher-js (the npm package's web build) against corecast started with
// --permessage-deflate: the browser offers the extension on its own, the 101 accepts it (seen
// through the DevTools protocol), and a ~4 KB event published with the official server SDK
// arrives intact (corecast sent it compressed: tests/examples_browser.rs checks its counters).
'use strict';
const path = require('node:path');
const { assert, CORECAST_PORT, browser, waitFor, run } = require('./lib');

const modules = path.join(__dirname, '../../../.testenv/node/node_modules');
const PusherServer = require(path.join(modules, 'pusher'));

run(async () => {
  const sdk = new PusherServer({ appId: '1', key: 'app-key', secret: 'app-secret', host: '127.0.0.1', port: String(CORECAST_PORT), useTLS: false });
  const rows = Array.from({ length: 60 }, (_, i) => ({ id: i, user: `user-${i % 7}`, status: 'online', room: 'lobby' }));
  const b = await browser();
  try {
    const page = await b.newPage();
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('Network.enable');
    const handshakes = [];
    cdp.on('Network.webSocketHandshakeResponseReceived', (e) => handshakes.push(e.response));
    await page.setContent('<!doctype html><title>compression</title><p id="got">waiting</p>');
    await page.addScriptTag({ path: path.join(modules, 'pusher-js/dist/web/pusher.min.js') });
    await page.evaluate((port) => {
      window.received = [];
      const pusher = new Pusher('app-key', { wsHost: '127.0.0.1', wsPort: port, forceTLS: false, enabledTransports: ['ws'], cluster: 'local' });
      const ch = pusher.subscribe('feed');
      ch.bind('pusher:subscription_succeeded', () => { window.subscribed = true; });
      ch.bind('update', (data) => { window.received.push(data); document.getElementById('got').textContent = 'got'; });
    }, CORECAST_PORT);
    await waitFor('the subscription', () => page.evaluate(() => window.subscribed === true));
    const response = await waitFor('the handshake response', () => handshakes[0]);
    const headers = Object.fromEntries(Object.entries(response.headers).map(([k, v]) => [k.toLowerCase(), v]));
    assert.equal(response.status, 101);
    assert.match(headers['sec-websocket-extensions'] || '', /permessage-deflate/, JSON.stringify(headers));
    await sdk.trigger('feed', 'update', { rows });
    const got = await waitFor('the event in the page', () => page.evaluate(() => window.received[0]), { show: () => page.evaluate(() => window.received) });
    assert.deepEqual(got, { rows });
  } finally {
    await b.close();
  }
});
