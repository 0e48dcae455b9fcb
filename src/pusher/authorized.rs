//! Authorized connections (Pusher's app option): with `authorized_connections_timeout`, a
//! connection that neither signs in nor subscribes to a private, encrypted or presence channel
//! within that many seconds of `connection_established` is sent `pusher:error` 4009 and closed
//! with 4009 (pusher-js then does not reconnect).
//!
//! The deadlines live in a per-core queue per app (an app's timeout is fixed, so each queue is
//! in deadline order); the second-by-second tick closes what is due. A connection that
//! authorized meanwhile, or went, is skipped. Nothing is added to the slab entry but a flag bit.

use std::collections::VecDeque;

use super::apps::AppIdx;
use super::conn_state::flag;
use super::{Net, Pusher};
use crate::core::conn::ConnKey;

/// Per app: (core second due, connection), in due order.
#[derive(Default)]
pub(crate) struct Deadlines(Vec<VecDeque<(u32, ConnKey)>>);

impl Deadlines {
    /// Connections waiting to authorize, over all apps.
    pub(crate) fn len(&self) -> usize {
        self.0.iter().map(VecDeque::len).sum()
    }
}

impl Pusher {
    /// A connection of `app` was established: start its clock if the app requires authorization.
    pub(crate) fn expect_authorization(&mut self, e: &Net, key: ConnKey, app: AppIdx) {
        let timeout = self.app(app).authorized_connections_timeout;
        if timeout == 0 {
            return;
        }
        let queues = &mut self.deadlines.0;
        if queues.len() <= app.index() {
            queues.resize_with(app.index() + 1, VecDeque::new);
        }
        queues[app.index()].push_back((e.now().saturating_add(timeout), key));
    }

    /// The connection signed in or subscribed to a channel that needed the app's signature.
    pub(crate) fn authorized(&mut self, e: &mut Net, key: ConnKey) {
        if let Some(conn) = e.conn_mut(key) {
            conn.ext.flags |= flag::AUTHORIZED;
        }
    }

    /// Second by second: closes connections whose time to authorize is up.
    pub(crate) fn expire_unauthorized(&mut self, e: &mut Net) {
        let now = e.now();
        for i in 0..self.deadlines.0.len() {
            while let Some(&(due, key)) = self.deadlines.0[i].front() {
                if due > now {
                    break;
                }
                self.deadlines.0[i].pop_front();
                let unauthorized =
                    e.conn(key).is_some_and(|c| c.is_open() && c.ext.flags & flag::AUTHORIZED == 0);
                if unauthorized {
                    self.stats.unauthorized_closed += 1;
                    let timeout = self.apps.all()[i].authorized_connections_timeout;
                    let msg = format!(
                        "Connection not authorized within {timeout} seconds: sign in (pusher.signin()) or subscribe to a private or presence channel"
                    );
                    self.fail(e, key, 4009, &msg);
                }
            }
        }
        self.deadlines.0.iter_mut().filter(|q| q.is_empty() && q.capacity() > 1024).for_each(|q| {
            q.shrink_to_fit();
        });
    }
}
