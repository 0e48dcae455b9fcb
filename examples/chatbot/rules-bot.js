// A tiny rule-based bot behind Rasa's REST channel endpoint, so the example runs without Rasa.
// server.js mounts it when BOT_URL is not set; set BOT_URL to use a real Rasa server instead.
'use strict';
const express = require('express');

const RULES = [
  [/^(hi|hello|hey)\b/i, () => [{ text: "Hello! I'm the corecast demo bot. Ask me the time, or say help." }]],
  [/help/i, () => [
    { text: 'I can answer a few things. Try one:' },
    { buttons: [{ title: 'What time is it?', payload: 'time' }, { title: 'What is corecast?', payload: 'corecast' }] },
  ]],
  [/time/i, () => [{ text: `It is ${new Date().toLocaleTimeString('en-GB')} here.` }]],
  [/corecast|pusher/i, () => [{ text: 'corecast is a WebSocket server speaking the Pusher protocol: this answer reached you over it.' }]],
];

function answer(message) {
  for (const [pattern, reply] of RULES) if (pattern.test(message)) return reply();
  return [{ text: `You said "${message}". I only know a few rules; set BOT_URL to a Rasa server for a real assistant.` }];
}

const router = express.Router();
router.post('/webhooks/rest/webhook', express.json(), (req, res) => {
  const { sender, message } = req.body || {};
  if (typeof sender !== 'string' || typeof message !== 'string') {
    return res.status(400).json({ error: 'Send {"sender": "...", "message": "..."}.' });
  }
  res.json(answer(message).map((m) => ({ recipient_id: sender, ...m })));
});

module.exports = router;
