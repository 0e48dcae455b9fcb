// The page: joins presence-online (corecast keeps the members; pusher-js reports joins and
// leaves), shows time online today from the backend and counts it up for users online now.
'use strict';
const $ = (selector) => document.querySelector(selector);
const totals = new Map(); // user_id -> { user_id, today_ms, online, as_of, seen_at }

function duration(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const pad = (n) => String(n).padStart(2, '0');
  return `${Math.floor(s / 3600)}:${pad(Math.floor(s / 60) % 60)}:${pad(s % 60)}`;
}

function renderMembers(members) {
  const all = [];
  members.each((m) => all.push(m));
  all.sort((a, b) => a.id.localeCompare(b.id));
  $('#members').replaceChildren(...all.map((m) => {
    const li = document.createElement('li');
    li.dataset.userId = m.id;
    li.textContent = m.info.name;
    li.classList.toggle('self', m.id === members.me.id);
    return li;
  }));
  $('#count').textContent = `(${all.length})`;
}

// Rows come from /api/today and from `time-online` events; the newest (by as_of) wins.
function setTotal(row) {
  const known = totals.get(row.user_id);
  if (!known || known.as_of <= row.as_of) totals.set(row.user_id, { ...row, seen_at: Date.now() });
}

function renderTotals() {
  const now = Date.now();
  const rows = [...totals.values()].sort((a, b) => b.online - a.online || a.user_id.localeCompare(b.user_id));
  $('#totals tbody').replaceChildren(...rows.map((r) => {
    const tr = document.createElement('tr');
    tr.dataset.userId = r.user_id;
    tr.dataset.online = r.online;
    tr.dataset.todayMs = r.today_ms;
    const cells = [r.user_id, duration(r.today_ms + (r.online ? now - r.seen_at : 0)), r.online ? 'online' : 'offline'];
    tr.replaceChildren(...cells.map((text, i) => {
      const td = document.createElement('td');
      td.textContent = text;
      td.className = ['user', 'time', 'state'][i];
      return td;
    }));
    return tr;
  }));
}

async function loadTotals() {
  const { as_of, users } = await (await fetch('/api/today')).json();
  for (const row of users) setTotal({ ...row, as_of });
  renderTotals();
}

async function main() {
  const me = await fetch('/api/me');
  if (me.status === 401) {
    $('#login').hidden = false;
    return;
  }
  const { user_id, channel: name, pusher: cfg } = await me.json();
  $('#me').textContent = user_id;
  $('#app').hidden = false;

  const pusher = new Pusher(cfg.key, {
    wsHost: cfg.wsHost || location.hostname, wsPort: cfg.wsPort, forceTLS: false,
    enabledTransports: ['ws'], cluster: 'local',
    channelAuthorization: { endpoint: '/pusher/auth' },
    userAuthentication: { endpoint: '/pusher/user-auth' },
  });
  pusher.connection.bind('state_change', ({ current }) => {
    $('#status').dataset.state = current;
    $('#status').textContent = current === 'disconnected' ? 'signed out or disconnected: reload' : current;
    if (current === 'connected') loadTotals(); // also catches up after a reconnect
  });
  pusher.signin();

  const channel = pusher.subscribe(name);
  for (const event of ['pusher:subscription_succeeded', 'pusher:member_added', 'pusher:member_removed']) {
    channel.bind(event, () => renderMembers(channel.members));
  }
  channel.bind('pusher:subscription_error', (e) => { $('#status').textContent = `cannot join: ${e.error || e.status}`; });
  channel.bind('time-online', (row) => { setTotal(row); renderTotals(); });
  setInterval(renderTotals, 1000);
  setInterval(loadTotals, 60_000); // a new day starts from zero
}

main();
