// examples/chatbot in headless Chromium through a real corecast: the built-in rule bot answers
// in the page and in the visitor's second tab; a bot plugged in by URL is spoken to in Rasa's
// REST channel shape; a slow bot holds up no other visitor and ends in a clear message, and so
// do a failing one and an answer too large for an event.
'use strict';
const http = require('node:http');
const { assert, CORECAST_PORT, browser, waitFor, startBackend, texts, run } = require('./lib');

const [PORT_RULES, PORT_RASA] = process.env.BACKEND_PORTS.split(',');
const env = (port, extra) => ({ PORT: port, PUSHER_PORT: String(CORECAST_PORT), COOKIE_SECRET: 'test-secret', ...extra });

// A stand-in for a Rasa server (`POST /webhooks/rest/webhook`): "slow" never gets an answer,
// "fail" gets a 500, "long" an answer over corecast's event size limit, anything else an echo.
function fakeRasa() {
  const requests = [];
  const held = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
      const request = { method: req.method, url: req.url, type: req.headers['content-type'], body: JSON.parse(body) };
      requests.push(request);
      const { sender, message } = request.body;
      if (message === 'slow') return held.push(res);
      if (message === 'fail') return res.writeHead(500).end();
      const text = message === 'long' ? 'x'.repeat(20000) : `echo: ${message}`;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify([{ recipient_id: sender, text }]));
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({
    requests, url: `http://127.0.0.1:${server.address().port}/webhooks/rest/webhook`,
    close: () => { held.forEach((r) => r.destroy()); server.close(); },
  })));
}

const log = (page, kind) => texts(page, `#log li.${kind}`);
async function say(page, text) {
  await page.fill('#text', text);
  await page.press('#text', 'Enter');
}
async function sees(page, kind, pattern) {
  return waitFor(`a ${kind} message matching ${pattern} in ${page.url()}`,
    async () => (await log(page, kind)).find((t) => pattern.test(t)), { show: () => texts(page, '#log li') });
}

run(async ({ cleanup, diagnostics }) => {
  const rules = await startBackend('chatbot', env(PORT_RULES), '/api/me');
  cleanup.push(() => rules.stop());
  diagnostics.push(() => `rule-bot backend log:\n${rules.logs()}`);
  const chromium = await browser();
  cleanup.push(() => chromium.close());
  const pageErrors = [];
  async function open(context, url) {
    const page = await context.newPage();
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await page.goto(url + '/');
    await waitFor('the chat to be ready', () => page.$('#status[data-state=ready]'));
    return page;
  }

  // The built-in rule bot answers; the visitor's second tab sees the conversation too.
  const visitor = await chromium.newContext({ viewport: { width: 800, height: 640 } });
  const tab1 = await open(visitor, rules.url);
  const tab2 = await open(visitor, rules.url);
  await say(tab1, 'hello');
  await sees(tab1, 'bot', /^Hello! I'm the corecast demo bot/);
  await say(tab1, 'help');
  for (const tab of [tab1, tab2]) {
    await sees(tab, 'visitor', /^help$/);
    await sees(tab, 'bot', /^I can answer a few things/);
  }
  await tab2.click('#log li.buttons button:has-text("What is corecast?")');
  for (const tab of [tab1, tab2]) await sees(tab, 'bot', /^corecast is a WebSocket server/);
  assert.deepStrictEqual(await log(tab1, 'visitor'), await log(tab2, 'visitor'), 'both tabs show the same messages once');
  assert.deepStrictEqual(await log(tab1, 'visitor'), ['hello', 'help', 'What is corecast?']);
  await waitFor('the typing indicator to go', () => tab1.$('#typing[hidden]'));
  await tab1.screenshot({ path: process.env.SCREENSHOT });

  // A bot plugged in by URL (as a Rasa server would be) with a 3 s timeout.
  const rasa = await fakeRasa();
  cleanup.push(async () => rasa.close());
  const plugged = await startBackend('chatbot', env(PORT_RASA, { BOT_URL: rasa.url, BOT_TIMEOUT_MS: '3000' }), '/api/me');
  cleanup.push(() => plugged.stop());
  diagnostics.push(() => `plugged-bot backend log:\n${plugged.logs()}`);
  const slowVisitor = await open(await chromium.newContext(), plugged.url);
  const otherVisitor = await open(await chromium.newContext(), plugged.url);

  // The bot hangs on one visitor's message: that visitor sees "typing" (delivered over the
  // socket meanwhile), another visitor is answered, then the first gets a clear message.
  await say(slowVisitor, 'slow');
  await waitFor('"typing" for the slow answer', () => slowVisitor.$('#typing:not([hidden])'));
  await say(otherVisitor, 'are you there?');
  await sees(otherVisitor, 'bot', /^echo: are you there\?$/);
  assert.deepStrictEqual(await log(slowVisitor, 'error'), [], 'the slow answer is still awaited when the other visitor is answered');
  await sees(slowVisitor, 'error', /taking too long to answer/);
  assert.ok(await slowVisitor.$('#typing[hidden]'), '"typing" ends with the apology');

  await say(slowVisitor, 'fail');
  await sees(slowVisitor, 'error', /unavailable right now/);
  await say(slowVisitor, 'long');
  await sees(slowVisitor, 'error', /too long to show here/);
  await waitFor('"typing" to end', () => slowVisitor.$('#typing[hidden]'));

  // Rasa's REST channel request: POST JSON {sender, message}, the sender being the visitor.
  const slowId = await slowVisitor.$eval('body', (b) => b.dataset.visitor);
  const first = rasa.requests[0];
  assert.deepStrictEqual(first, { method: 'POST', url: '/webhooks/rest/webhook', type: 'application/json', body: { sender: slowId, message: 'slow' } });
  assert.deepStrictEqual(rasa.requests.map((r) => r.body.message), ['slow', 'are you there?', 'fail', 'long']);
  assert.deepStrictEqual(pageErrors, [], 'no errors in the pages');
});
