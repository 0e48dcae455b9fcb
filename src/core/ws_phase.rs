//! The WebSocket phase: decoded frames to endpoint handlers, the close handshake, failures.

use bytes::Bytes;

use super::Core;
use super::conn::{ConnKey, Endpoint, Phase};
use crate::protocol::decoder::{self, Event};
use crate::protocol::frame::{self, Opcode};

impl Core {
    pub(super) fn on_ws_bytes(&mut self, key: ConnKey, input: &mut [u8]) {
        let limits = self.settings.limits;
        let now = self.now;
        let Some(conn) = self.conn_mut(key) else { return };
        if conn.phase == Phase::Open {
            conn.last_seen = now;
        }
        let mut rx = conn.rx.take();
        let result = decoder::decode(&mut rx, input, &limits, |ev| self.on_event(key, ev));
        match result {
            Ok(_) => {
                if let Some(conn) = self.conn_mut(key) {
                    conn.rx = rx;
                }
            }
            Err(failure) => {
                self.stats.protocol_errors += 1;
                self.fail(key, failure.close_code(), failure.reason());
            }
        }
    }

    /// Fails the connection (RFC 6455 §7.1.7): close frame with `code`, then close the socket.
    /// The frame stream cannot be parsed further, so the peer's close is not awaited.
    pub fn fail(&mut self, key: ConnKey, code: u16, reason: &str) {
        let Some(conn) = self.conn(key) else { return };
        if conn.phase == Phase::Open {
            self.send(key, frame::encode_close(code, reason));
        }
        self.close_after_flush(key);
    }

    fn on_event(&mut self, key: ConnKey, ev: Event<'_>) {
        let Some(conn) = self.conn(key) else { return };
        let (phase, endpoint) = (conn.phase, conn.endpoint);
        if phase == Phase::Closing {
            // After our close frame only the peer's close matters; then the socket closes.
            if let Event::Close(_) = ev {
                self.close_after_flush(key);
            }
            return;
        }
        match ev {
            Event::Text(payload) => {
                self.stats.messages_in += 1;
                self.on_message(key, endpoint, Opcode::Text, payload);
            }
            Event::Binary(payload) => {
                self.stats.messages_in += 1;
                self.on_message(key, endpoint, Opcode::Binary, payload);
            }
            Event::Ping(payload) => self.send(key, frame::encode(Opcode::Pong, payload)),
            Event::Pong(_) => {}
            Event::Close(code) => {
                // Echo the peer's code (none if it sent none), then close the socket.
                let reply = match code {
                    Some(code) => frame::encode_close(code, ""),
                    None => Bytes::from_static(&[0x88, 0x00]),
                };
                self.send(key, reply);
                self.close_after_flush(key);
            }
        }
    }

    fn on_message(&mut self, key: ConnKey, endpoint: Endpoint, opcode: Opcode, payload: &[u8]) {
        match (endpoint, opcode) {
            (Endpoint::Echo, _) => self.send(key, frame::encode(opcode, payload)),
            (Endpoint::Pusher, Opcode::Text) => self.pusher_text(key, payload),
            // The Pusher protocol is text only; binary frames are ignored.
            (Endpoint::Pusher, _) | (Endpoint::None | Endpoint::Metrics, _) => {}
        }
    }

    /// Heartbeat: the connection was silent for the activity timeout. Pusher clients get
    /// `pusher:ping` (what pusher-js answers); others a WebSocket ping.
    pub(super) fn send_heartbeat_ping(&mut self, key: ConnKey) {
        let pusher = self.conn(key).is_some_and(|c| c.endpoint == Endpoint::Pusher);
        let ping = if pusher { crate::pusher::messages::ping() } else { Bytes::from_static(&[0x89, 0x00]) };
        self.send(key, ping);
    }

    /// Heartbeat: no reply to our ping in time.
    pub(super) fn heartbeat_failed(&mut self, key: ConnKey) {
        self.stats.ping_timeouts += 1;
        if let Some(conn) = self.conn(key) {
            // The peer is presumed dead: tell it why if it is not, but do not wait for it.
            if conn.phase == Phase::Open {
                if conn.endpoint == Endpoint::Pusher {
                    self.send(
                        key,
                        crate::pusher::messages::error(Some(4201), "Pong reply not received", None),
                    );
                    self.send(key, frame::encode_close(4201, "Pong reply not received"));
                } else {
                    self.send(key, frame::encode_close(1001, "no reply to ping"));
                }
            }
        }
        self.close_after_flush(key);
    }
}
