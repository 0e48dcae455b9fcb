//! A per-core timer wheel with one-second slots, for handshake, heartbeat and close timeouts.
//!
//! Re-arming is lazy: a connection's activity only updates its `last_seen`; when its slot comes
//! round, the owner recomputes the deadline and files it again if it moved. So activity costs one
//! store, and each idle connection is visited once per timeout period. Each entry records the
//! second it was filed for, so entries made stale by a shorter deadline are recognised and
//! dropped (the owner keeps the one valid second in `Conn::timer_at`).

/// One filed timer: which connection, and for which second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) idx: u32,
    pub(crate) generation: u32,
    pub(crate) at: u32,
}

pub(crate) struct Wheel {
    slots: Vec<Vec<Entry>>,
    /// The last second whose slot was emptied.
    now: u32,
}

impl Wheel {
    /// A wheel with `slots` one-second slots (a power of two); deadlines further away than that
    /// wrap round and are re-filed when their slot comes up early.
    pub(crate) fn new(slots: usize, now: u32) -> Wheel {
        assert!(slots.is_power_of_two());
        Wheel { slots: (0..slots).map(|_| Vec::new()).collect(), now }
    }

    /// Files a timer for second `entry.at`; a deadline already past fires on the next advance.
    /// Returns the second it was filed for (what the owner must remember to recognise it).
    pub(crate) fn schedule(&mut self, entry: Entry) -> u32 {
        let at = entry.at.max(self.now + 1);
        let mask = self.slots.len() - 1;
        self.slots[at as usize & mask].push(Entry { at, ..entry });
        at
    }

    /// Empties every slot up to and including second `now`, appending entries whose second has
    /// come to `due` and re-filing the ones that wrapped round.
    pub(crate) fn advance(&mut self, now: u32, due: &mut Vec<Entry>) {
        let mask = self.slots.len() - 1;
        while self.now < now {
            self.now += 1;
            let t = self.now;
            let slot = &mut self.slots[t as usize & mask];
            slot.retain(|e| {
                let fire = e.at <= t;
                if fire {
                    due.push(*e);
                }
                !fire
            });
            if slot.is_empty() && slot.capacity() > 4096 {
                *slot = Vec::new();
            }
        }
    }

    /// Entries filed (including stale ones), for memory accounting.
    pub(crate) fn len(&self) -> usize {
        self.slots.iter().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(idx: u32, at: u32) -> Entry {
        Entry { idx, generation: 0, at }
    }

    #[test]
    fn fires_at_the_filed_second_not_before() {
        let mut w = Wheel::new(8, 0);
        w.schedule(e(1, 3));
        let mut due = Vec::new();
        w.advance(2, &mut due);
        assert!(due.is_empty());
        w.advance(3, &mut due);
        assert_eq!(due, vec![e(1, 3)]);
    }

    #[test]
    fn deadlines_beyond_the_wheel_wrap_and_still_fire_on_time() {
        let mut w = Wheel::new(8, 0);
        w.schedule(e(7, 20));
        let mut due = Vec::new();
        w.advance(19, &mut due);
        assert!(due.is_empty());
        assert_eq!(w.len(), 1);
        w.advance(20, &mut due);
        assert_eq!(due, vec![e(7, 20)]);
    }

    #[test]
    fn past_deadlines_fire_on_the_next_second() {
        let mut w = Wheel::new(8, 10);
        w.schedule(e(1, 5));
        let mut due = Vec::new();
        w.advance(11, &mut due);
        assert_eq!(due, vec![e(1, 11)]);
    }

    #[test]
    fn a_long_jump_fires_everything_in_order() {
        let mut w = Wheel::new(4, 0);
        for i in 1..=10 {
            w.schedule(e(i, i));
        }
        let mut due = Vec::new();
        w.advance(100, &mut due);
        let order: Vec<u32> = due.iter().map(|d| d.idx).collect();
        assert_eq!(order, (1..=10).collect::<Vec<_>>());
        assert_eq!(w.len(), 0);
    }
}
