//! Pending timers by something another profile's event can name (a thread, a conversation
//! key, a phone number), most names with one timer: that one is held without a list.

use hashbrown::HashMap;

use crate::state::TimerKey;

/// The timers waiting on one name, in the order they were indexed.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Waiters {
    first: TimerKey,
    rest: Vec<TimerKey>,
}

impl Waiters {
    /// Keeps the timers `keep` says yes to; false when none is left.
    fn retain(&mut self, keep: impl Fn(&TimerKey) -> bool) -> bool {
        self.rest.retain(&keep);
        if keep(&self.first) {
            return true;
        }
        if self.rest.is_empty() {
            return false;
        }
        self.first = self.rest.remove(0);
        true
    }
}

/// Names an index holds before its first sweep.
const FIRST_SWEEP: usize = 1024;

/// Timer keys by a 64-bit name digest.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct ElsewhereIndex {
    by_name: HashMap<u64, Waiters>,
    /// Names held past which the next insert sweeps out those of timers gone (0: not swept yet).
    sweep_above: usize,
    /// Sweeps made.
    #[cfg(test)]
    #[serde(skip)]
    sweeps: usize,
}

impl ElsewhereIndex {
    /// Files `key` under `at`; entries of timers gone (of the `live` timers, `is_live` says
    /// which stand for one) are dropped once the index outgrows them.
    ///
    /// A timer may be filed under several names (its case, its message, a follow-up, a phone
    /// number), so the names of live timers alone can outnumber them by any factor: the next
    /// sweep waits until the index has doubled since the last one left it, and the sweeps cost
    /// the inserts a constant each, however many names the live timers hold.
    pub(crate) fn insert(&mut self, at: u64, key: TimerKey, live: usize, is_live: impl Fn(&TimerKey) -> bool) {
        match self.by_name.get_mut(&at) {
            Some(w) => w.rest.push(key),
            None => {
                self.by_name.insert(at, Waiters { first: key, rest: Vec::new() });
            }
        }
        if self.by_name.len() > self.sweep_above.max(2 * live + FIRST_SWEEP) {
            self.by_name.retain(|_, w| w.retain(&is_live));
            self.sweep_above = 2 * self.by_name.len() + FIRST_SWEEP;
            #[cfg(test)]
            {
                self.sweeps += 1;
            }
        }
    }

    /// Takes out the timers filed under `at`, in filing order.
    pub(crate) fn take(&mut self, at: u64) -> Option<impl Iterator<Item = TimerKey>> {
        let w = self.by_name.remove(&at)?;
        Some(std::iter::once(w.first).chain(w.rest))
    }

    /// Files `keys` (taken out and still waiting) under `at` again, in order.
    pub(crate) fn put_back(&mut self, at: u64, mut keys: Vec<TimerKey>) {
        if keys.is_empty() {
            return;
        }
        let first = keys.remove(0);
        self.by_name.insert(at, Waiters { first, rest: keys });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::EventRef;
    use crate::MomentType;
    use omnistitch_model::EventTime;
    use std::collections::HashSet;

    fn key(n: u64) -> TimerKey {
        TimerKey {
            due: EventTime(n as i64),
            moment: MomentType::FirstResponseSlaBreach,
            event_id: EventRef::new(&format!("e{n}")),
        }
    }

    /// Live timers each filed under three names hold more names than a sweep can drop: sweeps
    /// stay rare (each one waits for the index to double), and they drop only the names of
    /// timers gone.
    #[test]
    fn sweeps_stay_rare_when_live_timers_hold_many_names() {
        let mut index = ElsewhereIndex::default();
        let mut live = HashSet::new();
        let n = 20_000u64;
        for t in 0..n {
            live.insert(t);
            for name in 0..3 {
                index.insert(t * 3 + name, key(t), live.len(), |k| live.contains(&(k.due.0 as u64)));
            }
            // One timer in four fires (or is cancelled) soon after it is armed.
            if t % 4 == 0 && t >= 8 {
                live.remove(&(t - 8));
            }
        }
        assert!(index.sweeps >= 1, "the names of timers gone are swept out");
        assert!(index.sweeps <= 12, "{} sweeps over {} inserts", index.sweeps, 3 * n);
        // Every live timer is still found under each of its names.
        for t in [n - 1, n / 2 + 1, 1] {
            let names: Vec<_> = (0..3).filter_map(|name| index.take(t * 3 + name)).collect();
            assert_eq!(names.len(), 3, "timer {t} under each name");
        }
        assert!(index.by_name.len() <= 2 * 3 * live.len() + 2 * FIRST_SWEEP, "{} names", index.by_name.len());
    }

    #[test]
    fn a_sweep_keeps_the_filing_order_of_the_timers_left() {
        let mut w = Waiters { first: key(1), rest: vec![key(2), key(3), key(4)] };
        assert!(w.retain(|k| k.due.0 != 1 && k.due.0 != 3));
        assert_eq!((w.first.due.0, w.rest.iter().map(|k| k.due.0).collect::<Vec<_>>()), (2, vec![4]));
        assert!(!w.retain(|_| false));
    }
}
