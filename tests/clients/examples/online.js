// examples/online in headless Chromium through a real corecast: two tabs as one user and one as
// another are each listed once; closing one tab keeps the user online; closing both makes them
// offline with their time online in SQLite; a backend restart loses no time; signing out closes
// every tab of the user.
'use strict';
const { assert, path, CORECAST_PORT, WORK_DIR, fromExample, browser, waitFor, startBackend, texts, run } = require('./lib');

const Database = fromExample('online', 'better-sqlite3');
const Pusher = fromExample('online', 'pusher');
const api = new Pusher({ appId: '1', key: 'app-key', secret: 'app-secret', host: '127.0.0.1', port: String(CORECAST_PORT), useTLS: false });
const CHANNEL = 'presence-online';
const DB_FILE = path.join(WORK_DIR, 'online.sqlite3');
const ENV = { PORT: process.env.BACKEND_PORT, PUSHER_PORT: String(CORECAST_PORT), DB_FILE, COOKIE_SECRET: 'test-secret' };

const sessions = (user) => new Database(DB_FILE, { readonly: true, fileMustExist: true })
  .prepare('SELECT * FROM sessions WHERE user_id = ? ORDER BY id').all(user);
const members = (page) => texts(page, '#members li', 'data-user-id');
const totalRow = (page, user) => page.$eval(`#totals tr[data-user-id="${user}"]`, (tr) => ({ ...tr.dataset }));
// corecast's HTTP API about presence-online: its info ('') or its members ('/users').
async function corecast(suffix) {
  const params = suffix ? {} : { info: 'subscription_count,user_count' };
  return (await api.get({ path: `/channels/${CHANNEL}${suffix}`, params })).json();
}

async function listed(page, expected) {
  await waitFor(`${page.url()} to list ${expected}`, async () => JSON.stringify(await members(page)) === JSON.stringify(expected),
    { show: () => members(page) });
}

run(async ({ cleanup, diagnostics }) => {
  let backend = await startBackend('online', ENV, '/api/today');
  cleanup.push(() => backend.stop());
  diagnostics.push(() => `backend log:\n${backend.logs()}`);
  const chromium = await browser();
  cleanup.push(() => chromium.close());
  const pageErrors = [];

  async function open(context, name) {
    const page = await context.newPage();
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await page.goto(backend.url + '/');
    if (name) {
      await page.fill('input[name=name]', name);
      await page.click('button:has-text("Sign in")');
    }
    await waitFor('the page to connect', () => page.$('#status[data-state=connected]'));
    return page;
  }

  // Two tabs as alice (one browser context shares her sign-in cookie), one tab as bob.
  const viewport = { width: 800, height: 560 };
  const alice = await chromium.newContext({ viewport });
  const bob = await chromium.newContext({ viewport });
  const a1 = await open(alice, 'alice');
  const aliceSince = Date.now();
  const a2 = await open(alice);
  const b1 = await open(bob, 'bob');
  for (const page of [a1, a2, b1]) await listed(page, ['alice', 'bob']);
  await waitFor('an open session each for alice and bob', () => sessions('alice').length === 1 && sessions('bob').length === 1,
    { show: () => [sessions('alice'), sessions('bob')] });
  assert.strictEqual(sessions('alice')[0].ended_ms, null);
  assert.deepStrictEqual(await corecast('/users'), { users: [{ id: 'alice' }, { id: 'bob' }] });
  await waitFor('alice online in the totals', async () => (await totalRow(b1, 'alice')).online === 'true');

  // One of alice's tabs closes: corecast drops the connection, alice stays a member.
  await a2.close();
  await waitFor('corecast to drop the closed tab', async () => (await corecast('')).subscription_count === 2, { show: () => corecast('') });
  // A webhook after it (carol joins) proves no member_removed for alice came before.
  const carol = await chromium.newContext({ viewport });
  const c1 = await open(carol, 'carol');
  await waitFor("carol's session", () => sessions('carol').length === 1, { show: () => sessions('carol') });
  assert.deepStrictEqual(sessions('alice').map((s) => s.ended_ms), [null], 'alice is still online after closing one tab');
  for (const page of [a1, b1]) await listed(page, ['alice', 'bob', 'carol']);

  // alice's last tab closes: she is offline, and her time online is in the database.
  await a1.close();
  const aliceUntil = Date.now();
  for (const page of [b1, c1]) await listed(page, ['bob', 'carol']);
  const [session] = await waitFor("alice's session to end", () => sessions('alice').every((s) => s.ended_ms) && sessions('alice'),
    { show: () => sessions('alice') });
  assert.strictEqual(sessions('alice').length, 1, 'one session for alice, whatever her tabs did');
  const online = session.ended_ms - session.started_ms;
  assert.ok(online > 0 && online <= aliceUntil - aliceSince + 1000, `alice online ${online} ms, open ${aliceUntil - aliceSince} ms`);
  const row = await waitFor('alice offline in the totals', async () => { const r = await totalRow(b1, 'alice'); return r.online === 'false' && r; });
  assert.strictEqual(Number(row.todayMs), online, 'the page shows the time in the database');
  await b1.screenshot({ path: process.env.SCREENSHOT });

  // The backend is down while carol leaves: after its restart the reconciliation with corecast
  // and the webhook corecast retries give carol's real leaving time (not the restart time).
  await backend.stop();
  const carolLeft = Date.now();
  await c1.close();
  await waitFor('corecast to drop carol', async () => !(await corecast('/users')).users.some((u) => u.id === 'carol'), { show: () => corecast('/users') });
  backend = await startBackend('online', ENV, '/api/today');
  const reconciledAt = Number(await waitFor('the reconciliation', () => /reconciled at (\d+)/.exec(backend.logs())?.[1]));
  const carolEnded = await waitFor("carol's session to end with the webhook's time", () => {
    const [s] = sessions('carol');
    return s.ended_ms && !s.estimated && s.ended_ms;
  }, { show: () => sessions('carol') });
  assert.ok(carolEnded >= carolLeft - 5 && carolEnded < reconciledAt, `carol ended at ${carolEnded}; left ${carolLeft}, restart ${reconciledAt}`);
  assert.deepStrictEqual(sessions('bob').map((s) => s.ended_ms), [null], 'bob stayed online through the restart');
  await waitFor('carol offline in the totals', async () => (await totalRow(b1, 'carol')).online === 'false');

  // Signing out in a second tab of bob's closes his first one too.
  const b2 = await open(bob);
  await b2.click('button:has-text("Sign out")');
  await waitFor("bob's other tab to be disconnected", () => b1.$('#status[data-state=disconnected]'));
  await waitFor("bob's session to end", () => sessions('bob')[0].ended_ms, { show: () => sessions('bob') });
  await waitFor('the sign-in form again', () => b2.$('#login:not([hidden])'));
  assert.deepStrictEqual(pageErrors, [], 'no errors in the pages');
});
