// "Who is online" on corecast: a presence channel every signed-in page joins, and time online per
// user kept in SQLite from corecast's member_added / member_removed webhooks.
'use strict';
const path = require('node:path');
const crypto = require('node:crypto');
const express = require('express');
const cookieParser = require('cookie-parser');
const Pusher = require('pusher');
const timeOnline = require('./db');

const env = process.env;
const PORT = Number(env.PORT || 3000);
const CHANNEL = 'presence-online';
const pusher = new Pusher({
  appId: env.PUSHER_APP_ID || '1',
  key: env.PUSHER_KEY || 'app-key',
  secret: env.PUSHER_SECRET || 'app-secret',
  host: env.PUSHER_HOST || '127.0.0.1',
  port: env.PUSHER_PORT || '6002',
  useTLS: false,
});
// Where browsers reach corecast: the host the page came from, unless PUSHER_WS_HOST says otherwise.
const browserPusher = {
  key: env.PUSHER_KEY || 'app-key',
  wsHost: env.PUSHER_WS_HOST || '',
  wsPort: Number(env.PUSHER_WS_PORT || env.PUSHER_PORT || 6002),
};
const db = timeOnline.open(env.DB_FILE || path.join(__dirname, 'online.sqlite3'));

const app = express();
// Sign-in is a name in a signed cookie: stands in for your application's own sessions.
app.use(cookieParser(env.COOKIE_SECRET || crypto.randomBytes(32).toString('hex')));
const currentUser = (req) => req.signedCookies.user || null;
const USER_ID = /^[A-Za-z0-9_-]{1,20}$/;

app.use(express.static(path.join(__dirname, 'public')));
app.get('/pusher.min.js', (req, res) => res.sendFile(require.resolve('pusher-js/dist/web/pusher.min.js')));

app.post('/login', express.urlencoded({ extended: false }), (req, res) => {
  const name = String(req.body.name || '').trim();
  if (!USER_ID.test(name)) return res.status(400).send('A name is 1 to 20 letters, digits, - or _. Go back and try again.');
  res.cookie('user', name, { signed: true, httpOnly: true, sameSite: 'lax' }).redirect(303, '/');
});

// Signs out and closes the user's connections on every tab and device (corecast: code 4009).
app.post('/logout', async (req, res) => {
  const user = currentUser(req);
  res.clearCookie('user');
  if (user) {
    await pusher.terminateUserConnections(user).catch((e) => console.error(`cannot disconnect ${user}: ${e.message}`));
  }
  res.redirect(303, '/');
});

app.get('/api/me', (req, res) => {
  const user = currentUser(req);
  if (!user) return res.status(401).json({ error: 'not signed in' });
  res.json({ user_id: user, channel: CHANNEL, pusher: browserPusher });
});

app.get('/api/today', (req, res) => {
  const now = Date.now();
  res.json({ as_of: now, users: db.totals(now) });
});

// pusher-js channel authorization: only presence-online, as the signed-in user.
app.post('/pusher/auth', express.urlencoded({ extended: false }), (req, res) => {
  const user = currentUser(req);
  if (!user) return res.status(403).send('Sign in first.');
  if (req.body.channel_name !== CHANNEL) return res.status(403).send(`Only ${CHANNEL} is offered here.`);
  res.json(pusher.authorizeChannel(req.body.socket_id, CHANNEL, { user_id: user, user_info: { name: user } }));
});

// pusher-js user authentication (pusher.signin()): lets /logout end all of a user's connections.
app.post('/pusher/user-auth', express.urlencoded({ extended: false }), (req, res) => {
  const user = currentUser(req);
  if (!user) return res.status(403).send('Sign in first.');
  res.json(pusher.authenticateUser(req.body.socket_id, { id: user }));
});

// Reconciled with corecast's member list before any webhook is applied (see reconcile()).
let reconciled;

// corecast's webhooks: verified with the SDK, applied in one transaction per body, answered 200
// only once stored (anything else makes corecast retry the body), then each changed user's total
// is pushed to the pages.
app.post('/pusher/webhooks', express.text({ type: 'application/json' }), async (req, res) => {
  const hook = pusher.webhook({ headers: req.headers, rawBody: req.body });
  if (!hook.isValid()) return res.status(401).send('Bad X-Pusher-Key or X-Pusher-Signature.');
  await reconciled;
  const timeMs = hook.getData().time_ms;
  const changed = new Set();
  db.transaction(() => {
    for (const e of hook.getEvents()) {
      if (e.channel !== CHANNEL) continue;
      if (e.name === 'member_added') db.memberAdded(e.user_id, timeMs);
      else if (e.name === 'member_removed') db.memberRemoved(e.user_id, timeMs);
      else continue;
      changed.add(e.user_id);
    }
  });
  res.sendStatus(200);
  const now = Date.now();
  for (const user of changed) {
    pusher.trigger(CHANNEL, 'time-online', { ...db.userTotal(user, now), as_of: now })
      .catch((e) => console.error(`cannot send ${user}'s time online: ${e.message}`));
  }
});

// After a restart, webhooks sent while the backend was down may never come (corecast retries
// each for up to 280 s): start from the members corecast has now.
async function reconcile() {
  for (let attempt = 1; ; attempt++) {
    try {
      const res = await pusher.get({ path: `/channels/${CHANNEL}/users` });
      const { users } = await res.json();
      const now = Date.now();
      db.reconcile(users.map((u) => u.id), now);
      console.log(`reconciled at ${now} with corecast: ${users.length} online`);
      return;
    } catch (e) {
      console.error(`cannot ask corecast for ${CHANNEL}'s members (${e.message}); retrying`);
      await new Promise((resolve) => setTimeout(resolve, Math.min(attempt * 500, 5000)));
    }
  }
}

reconciled = reconcile();
app.listen(PORT, env.HOST || '127.0.0.1', () => console.log(`online example on http://localhost:${PORT}/`));
