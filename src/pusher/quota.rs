//! Per-app connection quotas (`max_connections`), counted exactly on the app's owner core:
//! other cores reserve and release there.

use super::apps::AppIdx;
use super::peer::PeerMsg;
use super::{Net, Pusher, owner_of};
use crate::core::conn::ConnKey;

impl Pusher {
    /// Asks the app's owner core for one connection of its quota; `quota_answer` continues.
    pub(crate) fn reserve_quota(&mut self, e: &mut Net, key: ConnKey, app: AppIdx) {
        let owner = owner_of(app, "", e.settings().cores);
        if owner == e.shard() {
            let granted = self.quota_take(app);
            self.quota_answer(e, key, app, granted);
        } else {
            let from = self.socket_ref(e, key);
            e.send_to_peer(owner, PeerMsg::AppReserve { app, from });
        }
    }

    /// The app's owner core answered a quota reservation.
    pub(crate) fn quota_answer(&mut self, e: &mut Net, key: ConnKey, app: AppIdx, granted: bool) {
        let alive = e.conn(key).is_some_and(|c| c.is_open());
        match (granted, alive) {
            (true, true) => self.established(e, key),
            (false, true) => self.fail(e, key, 4004, "Application is over connection quota"),
            // Gone meanwhile: give the reservation back.
            (true, false) => self.release_quota(e, app),
            (false, false) => {}
        }
    }

    /// On the app's owner core: takes one connection from the app's quota.
    pub(crate) fn quota_take(&mut self, app: AppIdx) -> bool {
        let max = self.app(app).max_connections;
        let used = &mut self.quota_used[app.index()];
        if *used >= max {
            return false;
        }
        *used += 1;
        true
    }

    /// Gives one connection back to the app's quota (on its owner core).
    pub(crate) fn release_quota(&mut self, e: &mut Net, app: AppIdx) {
        let owner = owner_of(app, "", e.settings().cores);
        if owner == e.shard() {
            let used = &mut self.quota_used[app.index()];
            *used = used.saturating_sub(1);
        } else {
            e.send_to_peer(owner, PeerMsg::AppRelease { app });
        }
    }
}
