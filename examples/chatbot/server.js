// A chat box per visitor on corecast: the page posts each message here over HTTP, the backend
// asks the bot (Rasa REST channel shape) in the background and sends its answer to the
// visitor's #server-to-user-{id} channel through corecast's HTTP API, reaching all their tabs.
'use strict';
const path = require('node:path');
const crypto = require('node:crypto');
const express = require('express');
const cookieParser = require('cookie-parser');
const Pusher = require('pusher');
const { askBot } = require('./bot');

const env = process.env;
const PORT = Number(env.PORT || 3001);
const BOT_URL = env.BOT_URL || `http://127.0.0.1:${PORT}/webhooks/rest/webhook`;
const BOT_TIMEOUT_MS = Number(env.BOT_TIMEOUT_MS || 10000);
const MAX_PENDING = 5; // unanswered messages per visitor before the backend says "slow down"
const pusher = new Pusher({
  appId: env.PUSHER_APP_ID || '1',
  key: env.PUSHER_KEY || 'app-key',
  secret: env.PUSHER_SECRET || 'app-secret',
  host: env.PUSHER_HOST || '127.0.0.1',
  port: env.PUSHER_PORT || '6003',
  useTLS: false,
});
const browserPusher = {
  key: env.PUSHER_KEY || 'app-key',
  wsHost: env.PUSHER_WS_HOST || '', // empty: the host the page came from
  wsPort: Number(env.PUSHER_WS_PORT || env.PUSHER_PORT || 6003),
};

const app = express();
app.use(cookieParser(env.COOKIE_SECRET || crypto.randomBytes(32).toString('hex')));
app.use(express.static(path.join(__dirname, 'public')));
app.get('/pusher.min.js', (req, res) => res.sendFile(require.resolve('pusher-js/dist/web/pusher.min.js')));
if (!env.BOT_URL) app.use(require('./rules-bot'));

// Visitors are anonymous: a random id in a signed cookie, given on the first visit.
function visitor(req, res) {
  let id = req.signedCookies.visitor;
  if (!id) {
    id = 'v-' + crypto.randomBytes(9).toString('base64url');
    res.cookie('visitor', id, { signed: true, httpOnly: true, sameSite: 'lax', maxAge: 30 * 86400e3 });
  }
  return id;
}

app.get('/api/me', (req, res) => res.json({ visitor: visitor(req, res), pusher: browserPusher }));

// pusher-js user authentication (pusher.signin()): the socket becomes the visitor's, so events
// for #server-to-user-{visitor} reach it.
app.post('/pusher/user-auth', express.urlencoded({ extended: false }), (req, res) => {
  const id = req.signedCookies.visitor;
  if (!id) return res.status(403).send('Load the page first: it gives you a visitor id.');
  res.json(pusher.authenticateUser(req.body.socket_id, { id }));
});

const send = (id, event, data) =>
  pusher.sendToUser(id, event, data).catch((e) => console.error(`cannot send ${event} to ${id}: ${e.message}`));

const SORRY = {
  timeout: 'The assistant is taking too long to answer. Please try again in a moment.',
  unavailable: 'The assistant is unavailable right now. Please try again in a moment.',
  tooLong: 'The answer is too long to show here. Please ask for something shorter.',
};

// One turn: ask the bot, then send its answer (or an apology) to every tab of the visitor.
async function turn(id, message) {
  let reply;
  try {
    reply = { in_reply_to: message.id, messages: await askBot(BOT_URL, id, message.text, BOT_TIMEOUT_MS) };
  } catch (e) {
    console.error(`visitor ${id}: ${e.message}`);
    reply = { in_reply_to: message.id, messages: [], error: SORRY[e.kind] || SORRY.unavailable };
  }
  try {
    await pusher.sendToUser(id, 'bot-reply', reply);
  } catch (e) {
    console.error(`cannot send the answer to ${id}: ${e.message}`);
    // Over corecast's max_event_bytes (413): say so rather than leave "typing" on.
    if (e.status === 413) await send(id, 'bot-reply', { in_reply_to: message.id, messages: [], error: SORRY.tooLong });
  }
}

// Each visitor's turns run one after another (as Rasa handles one sender), visitors in parallel.
const queues = new Map(); // visitor -> { tail: Promise, pending: number }
function enqueue(id, job) {
  const q = queues.get(id) || { tail: Promise.resolve(), pending: 0 };
  q.pending += 1;
  q.tail = q.tail.then(job).catch((e) => console.error(`visitor ${id}: ${e.stack}`)).finally(() => {
    q.pending -= 1;
    if (q.pending === 0) queues.delete(id);
  });
  queues.set(id, q);
}

// A visitor's message: acknowledged at once (202); the bot's answer comes over the socket, so a
// slow bot holds up neither this request nor anything corecast delivers.
app.post('/chat', express.json({ limit: '8kb' }), (req, res) => {
  const id = req.signedCookies.visitor;
  // label: what the visitor saw, when it differs from the text sent (a button's title)
  const { id: messageId, text, label } = req.body || {};
  if (!id) return res.status(403).json({ error: 'Load the page first: it gives you a visitor id.' });
  if (typeof messageId !== 'string' || !/^[\w-]{1,64}$/.test(messageId)) return res.status(400).json({ error: 'Send {"id": "...", "text": "..."}.' });
  if (typeof text !== 'string' || !text.trim() || text.length > 2000) return res.status(400).json({ error: 'A message is 1 to 2000 characters.' });
  if (label !== undefined && (typeof label !== 'string' || label.length > 200)) return res.status(400).json({ error: 'A label is at most 200 characters.' });
  if ((queues.get(id)?.pending || 0) >= MAX_PENDING) return res.status(429).json({ error: 'Wait for the answers before sending more.' });
  res.status(202).json({ id: messageId });
  const message = { id: messageId, text: text.trim(), label };
  // One batch, so the events arrive in this order: the message (for the visitor's other tabs),
  // then "typing"; the answer is sent only after them.
  const channel = `#server-to-user-${id}`;
  const announced = pusher
    .triggerBatch([
      { channel, name: 'visitor-message', data: message },
      { channel, name: 'bot-typing', data: { in_reply_to: messageId } },
    ])
    .catch((e) => console.error(`cannot send visitor ${id}'s message to their tabs: ${e.message}`));
  enqueue(id, () => announced.then(() => turn(id, message)));
});

app.listen(PORT, env.HOST || '127.0.0.1', () => console.log(`chatbot example on http://localhost:${PORT}/ (bot: ${BOT_URL})`));
