//! Deadlines per phase, driven by the core's timer wheel.
//!
//! - Http: `last_seen` (phase start or last response) + handshake timeout.
//! - Open: `last_seen` (last inbound bytes) + activity timeout; then a ping, and `timer_at`
//!   becomes the pong deadline.
//! - Closing: `last_seen` (when closing began) + close timeout (drain timeout while draining).

use super::conn::{ConnKey, Phase, flag};
use super::engine::Engine;
use super::service::Service;
use super::wheel::Entry;

impl<S: Service> Engine<S> {
    /// Advances the clock by one second and handles every deadline of that second. False when
    /// the clock is already at `until`.
    pub(crate) fn tick_one(&mut self, until: u32) -> bool {
        if self.now >= until {
            return false;
        }
        // Second by second, so that a deadline re-filed while handling one second can still
        // fall due within this tick.
        let mut due = std::mem::take(&mut self.due);
        self.now += 1;
        self.wheel.advance(self.now, &mut due);
        for entry in due.drain(..) {
            self.on_timer(entry);
        }
        self.due = due;
        true
    }

    /// The second at which `key`'s current deadline falls.
    fn deadline(&self, key: ConnKey) -> Option<u32> {
        let conn = self.conn(key)?;
        let s = self.settings();
        Some(match conn.phase {
            Phase::Http => conn.last_seen.saturating_add(s.handshake_timeout),
            Phase::Open if conn.has(flag::PING_SENT) => conn.timer_at,
            Phase::Open => conn.last_seen.saturating_add(s.activity_timeout),
            Phase::Closing => conn.last_seen.saturating_add(if self.draining {
                s.drain_timeout.max(1)
            } else {
                s.close_timeout
            }),
        })
    }

    /// Files the connection's deadline in the wheel.
    pub(crate) fn arm(&mut self, key: ConnKey) {
        let Some(at) = self.deadline(key) else { return };
        let filed = self.wheel.schedule(Entry { idx: key.idx, generation: key.generation, at });
        if let Some(conn) = self.conn_mut(key) {
            conn.timer_at = filed;
        }
    }

    /// Files the deadline again if it is now earlier than the one filed, or if the one filed has
    /// already come (it is being handled, and nothing else would fire). Later ones are found
    /// lazily when the filed one fires.
    pub(crate) fn rearm_if_sooner(&mut self, key: ConnKey) {
        let (Some(at), Some(conn)) = (self.deadline(key), self.conn(key)) else { return };
        if at < conn.timer_at || conn.timer_at <= self.now {
            self.arm(key);
        }
    }

    fn on_timer(&mut self, entry: Entry) {
        let key = ConnKey { idx: entry.idx, generation: entry.generation };
        let Some(conn) = self.conn(key) else { return };
        if conn.timer_at != entry.at {
            return; // superseded by a sooner deadline
        }
        let (phase, ping_sent, last_seen) = (conn.phase, conn.has(flag::PING_SENT), conn.last_seen);
        let now = self.now;
        if phase == Phase::Open && ping_sent {
            let ping_at = entry.at.saturating_sub(self.settings().pong_timeout);
            if last_seen >= ping_at {
                // The peer spoke after our ping: alive.
                if let Some(conn) = self.conn_mut(key) {
                    conn.clear(flag::PING_SENT);
                }
                return self.arm(key);
            }
            return self.heartbeat_failed(key);
        }
        match self.deadline(key) {
            Some(at) if at > now => return self.arm(key),
            None => return,
            Some(_) => {}
        }
        match phase {
            Phase::Http => {
                self.stats.handshake_timeouts += 1;
                if let Some(conn) = self.conn_mut(key) {
                    conn.set(flag::KILL);
                    conn.wake();
                }
            }
            Phase::Open => {
                self.send_heartbeat_ping(key);
                let pong_deadline = now.saturating_add(self.settings().pong_timeout);
                let filed = self.wheel.schedule(Entry {
                    idx: key.idx,
                    generation: key.generation,
                    at: pong_deadline,
                });
                if let Some(conn) = self.conn_mut(key) {
                    conn.set(flag::PING_SENT);
                    conn.timer_at = filed;
                }
            }
            Phase::Closing => {
                if let Some(conn) = self.conn_mut(key) {
                    conn.set(flag::KILL);
                    conn.wake();
                }
            }
        }
    }
}
