// The status page served by corecast itself (tests/examples_browser.rs starts corecast with
// --metrics-port METRICS_PORT): three pusher-js clients and some published events, then the page
// in headless Chromium must show them: 3 WebSockets, the channels, per-core rows, message rates
// and deliveries per send.
'use strict';
const path = require('node:path');
const { assert, CORECAST_PORT, browser, waitFor, run } = require('./lib');

const modules = path.join(__dirname, '../../../.testenv/node/node_modules');
const Pusher = require(path.join(modules, 'pusher-js'));
const PusherServer = require(path.join(modules, 'pusher'));

run(async () => {
  const clients = [0, 1, 2].map(() => new Pusher('app-key', {
    wsHost: '127.0.0.1', wsPort: CORECAST_PORT, forceTLS: false, enabledTransports: ['ws'], cluster: 'local',
  }));
  const received = [];
  for (const [i, c] of clients.entries()) {
    const ch = c.subscribe(`status-${i % 2}`);
    ch.bind('tick', () => received.push(i));
    await new Promise((resolve) => ch.bind('pusher:subscription_succeeded', resolve));
  }
  const sdk = new PusherServer({ appId: '1', key: 'app-key', secret: 'app-secret', host: '127.0.0.1', port: String(CORECAST_PORT), useTLS: false });
  const b = await browser();
  try {
    const page = await b.newPage({ viewport: { width: 1100, height: 720 } });
    await page.goto(`http://127.0.0.1:${process.env.METRICS_PORT}/status`);
    const text = (sel) => page.textContent(sel);
    await waitFor('3 WebSockets on the page', async () => (await text('#websockets')) === '3', { show: () => text('#websockets') });
    await waitFor('2 channels', async () => (await text('#channels')) === '2', { show: () => text('#channels') });
    await waitFor('a row per core', async () => (await page.$$('#cores tr')).length === 2);
    // Traffic: the out rate and deliveries per send become numbers above zero.
    let n = 0;
    const publisher = setInterval(() => { n += 1; sdk.trigger(['status-0', 'status-1'], 'tick', { n }); }, 50);
    try {
      await waitFor('an outbound rate', async () => Number((await text('#out_rate')).replace(/,/g, '')) > 0, { show: () => text('#out_rate') });
      await waitFor('deliveries per send', async () => Number(await text('#per_send')) >= 1, { show: () => text('#per_send') });
      // A few seconds of history on the charts, for the screenshot.
      const points = () => page.$eval('#c-out_rate polyline', (p) => (p.getAttribute('points') || '').split(' ').length);
      await waitFor('8 points on the charts', async () => (await points()) >= 8, { show: points, ms: 15000 });
    } finally {
      clearInterval(publisher);
    }
    assert.ok(received.length > 0, 'the clients received the events');
    const state = await text('#state');
    assert.match(state, /^live/, state);
    await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true });
  } finally {
    await b.close();
    clients.forEach((c) => c.disconnect());
  }
});
