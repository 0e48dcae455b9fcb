// The bot behind the chat, spoken to in the shape of Rasa's REST channel, so a Rasa server
// (`rasa run`, default http://localhost:5005/webhooks/rest/webhook) plugs in by URL:
//
//   POST <url>  {"sender": "<visitor id>", "message": "<text>"}
//   200         [{"recipient_id": "<visitor id>", "text": "..."},
//                {"recipient_id": "<visitor id>", "buttons": [{"title": "...", "payload": "..."}]}]
'use strict';

class BotError extends Error {
  constructor(kind, detail) {
    super(`bot ${kind}: ${detail}`);
    this.kind = kind; // 'timeout' or 'unavailable'
  }
}

// Asks the bot; resolves with its messages ({text?, buttons?, image?}) for `sender`, or rejects
// with a BotError. The timeout covers connecting, the answer's head and its body.
async function askBot(url, sender, message, timeoutMs) {
  try {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ sender, message }),
      signal: AbortSignal.timeout(timeoutMs),
    });
    if (!res.ok) throw new BotError('unavailable', `HTTP ${res.status} from ${url}`);
    const replies = await res.json();
    if (!Array.isArray(replies)) throw new BotError('unavailable', 'the answer is not a list of messages');
    return replies
      .filter((r) => r && (r.recipient_id === undefined || r.recipient_id === sender))
      .map((r) => ({
        text: typeof r.text === 'string' ? r.text : undefined,
        image: typeof r.image === 'string' ? r.image : undefined,
        buttons: Array.isArray(r.buttons) ? r.buttons.map((b) => ({ title: String(b.title), payload: String(b.payload ?? b.title) })) : undefined,
      }))
      .filter((r) => r.text || r.image || r.buttons);
  } catch (e) {
    if (e instanceof BotError) throw e;
    if (e.name === 'TimeoutError') throw new BotError('timeout', `no answer within ${timeoutMs} ms`);
    throw new BotError('unavailable', e.cause?.code || e.message);
  }
}

module.exports = { askBot, BotError };
