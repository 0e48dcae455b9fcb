//! The WebSocket phase: decoded frames to the echo endpoint or the service, control frames, the
//! close handshake, failures.

use bytes::Bytes;

use super::Core;
use super::conn::{ConnKey, Inbound, Kind, Phase, flag};
use super::service::Service;
use crate::protocol::decoder::{self, Event, Partial};
use crate::protocol::deflate::Inflater;
use crate::protocol::frame::{self, Opcode};

impl<S: Service> Core<S> {
    pub(super) fn on_ws_bytes(&mut self, key: ConnKey, input: &mut [u8]) {
        let limits = self.e.settings().limits;
        let now = self.e.now();
        let Some(conn) = self.e.conn_mut(key) else { return };
        if conn.phase == Phase::Open {
            conn.last_seen = now;
        }
        // The decoder keeps its state boxed only while a frame or message is incomplete.
        let mut rx: Option<Box<Partial>> = match conn.inbound.take().map(|b| *b) {
            Some(Inbound::Frame(p)) => Some(Box::new(p)),
            Some(Inbound::Head(_)) | None => None,
        };
        // A connection that negotiated compression borrows the core's inflater for the call.
        let mut inflater =
            conn.deflate.map(|_| self.e.inflater.take().unwrap_or_else(|| Box::new(Inflater::new())));
        let result = decoder::decode_with(&mut rx, input, &limits, inflater.as_deref_mut(), |ev| {
            self.on_event(key, ev)
        });
        if inflater.is_some() {
            self.e.inflater = inflater;
        }
        match result {
            Ok(_) => {
                if let (Some(conn), Some(p)) = (self.e.conn_mut(key), rx) {
                    conn.inbound = Some(Box::new(Inbound::Frame(*p)));
                }
            }
            Err(failure) => {
                self.e.stats.protocol_errors += 1;
                self.e.fail(key, failure.close_code(), failure.reason());
            }
        }
    }

    fn on_event(&mut self, key: ConnKey, ev: Event<'_>) {
        let Some(conn) = self.e.conn(key) else { return };
        let (phase, kind) = (conn.phase, conn.kind);
        if phase == Phase::Closing {
            // After our close frame only the peer's close matters. It answers ours, so the peer
            // has read all we sent: the TCP connection closes now (RFC 6455 §7.1.1), without
            // lingering until the peer closes its side too.
            if let Event::Close(_) = ev {
                match self.e.conn_mut(key) {
                    Some(conn) if conn.out.is_none() => conn.set(flag::KILL),
                    _ => self.e.close_after_flush(key),
                }
            }
            return;
        }
        match ev {
            Event::Text(payload) => self.on_message(key, kind, Opcode::Text, payload),
            Event::Binary(payload) => self.on_message(key, kind, Opcode::Binary, payload),
            Event::Ping(payload) => self.e.send(key, frame::encode(Opcode::Pong, payload)),
            Event::Pong(_) => {}
            Event::Close(code) => {
                // Echo the peer's code (none if it sent none), then close the socket.
                let reply = match code {
                    Some(code) => frame::encode_close(code, ""),
                    None => Bytes::from_static(&[0x88, 0x00]),
                };
                self.e.send(key, reply);
                self.e.close_after_flush(key);
            }
        }
    }

    fn on_message(&mut self, key: ConnKey, kind: Kind, opcode: Opcode, payload: &[u8]) {
        self.e.stats.messages_in += 1;
        match kind {
            Kind::Echo => {
                let reply = self.e.frame_for(key, opcode, payload);
                self.e.send(key, reply);
            }
            Kind::Service => self.s.message(&mut self.e, key, opcode, payload),
            Kind::Http | Kind::MetricsHttp => {}
        }
    }
}
