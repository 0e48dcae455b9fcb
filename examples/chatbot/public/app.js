// The chat page: signs in as the visitor (pusher.signin()), posts each message to the backend
// and shows what arrives on the visitor's #server-to-user channel: its own messages (from any
// tab), "typing", and the bot's answers or an apology.
'use strict';
const $ = (selector) => document.querySelector(selector);
const shown = new Set(); // message ids already in the log
const waiting = new Set(); // ids of messages the bot has not answered yet
const answered = new Set();

function add(kind, content, id) {
  if (id && shown.has(id)) return null;
  if (id) shown.add(id);
  const li = document.createElement('li');
  li.className = kind;
  if (typeof content === 'string') li.textContent = content;
  else li.append(...content);
  $('#log').append(li);
  li.scrollIntoView({ block: 'end' });
  return li;
}

function showTyping() { $('#typing').hidden = waiting.size === 0; }

function showReply({ in_reply_to: id, messages, error }) {
  waiting.delete(id);
  answered.add(id);
  showTyping();
  if (error) add('error', error);
  for (const m of messages) {
    if (m.text) add('bot', m.text);
    if (m.image) add('bot', [Object.assign(document.createElement('img'), { src: m.image, alt: '' })]);
    if (m.buttons) {
      add('buttons', m.buttons.map((b) => {
        const button = document.createElement('button');
        button.textContent = b.title;
        button.onclick = () => send(b.payload, b.title);
        return button;
      }));
    }
  }
}

async function send(text, label = text) {
  const id = Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => b.toString(16).padStart(2, '0')).join('');
  const li = add('visitor', label, id);
  try {
    const body = JSON.stringify({ id, text, label: label === text ? undefined : label });
    const res = await fetch('/chat', { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    if (!res.ok) throw new Error((await res.json().catch(() => ({}))).error || `HTTP ${res.status}`);
  } catch (e) {
    li.classList.add('failed');
    add('error', `Not sent: ${e.message}`);
  }
}

function setStatus(state, text = state) {
  $('#status').dataset.state = state;
  $('#status').textContent = text;
  for (const el of $('#chat').elements) el.disabled = state !== 'ready';
}

async function main() {
  const { visitor, pusher: cfg } = await (await fetch('/api/me')).json();
  document.body.dataset.visitor = visitor;
  const pusher = new Pusher(cfg.key, {
    wsHost: cfg.wsHost || location.hostname, wsPort: cfg.wsPort, forceTLS: false,
    enabledTransports: ['ws'], cluster: 'local',
    userAuthentication: { endpoint: '/pusher/user-auth' },
  });
  pusher.user.bind('visitor-message', (m) => add('visitor', m.label || m.text, m.id));
  pusher.user.bind('bot-typing', ({ in_reply_to: id }) => { if (!answered.has(id)) waiting.add(id); showTyping(); });
  pusher.user.bind('bot-reply', showReply);

  // Ready once signed in and subscribed to #server-to-user-{visitor}: answers can reach us.
  pusher.connection.bind('state_change', async ({ current }) => {
    if (current !== 'connected') return setStatus(current);
    setStatus('connecting', 'signing in…');
    await pusher.user.signinDonePromise;
    const channel = pusher.user.serverToUserChannel;
    if (!channel) return setStatus('failed', 'sign-in failed: reload');
    if (channel.subscribed) setStatus('ready');
    else channel.bind('pusher:subscription_succeeded', () => setStatus('ready'));
  });
  pusher.signin();

  $('#chat').addEventListener('submit', (e) => {
    e.preventDefault();
    const text = $('#text').value.trim();
    if (!text) return;
    $('#text').value = '';
    send(text);
  });
}

main();
