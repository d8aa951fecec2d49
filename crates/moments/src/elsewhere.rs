//! Pending timers by something another profile's event can name (a thread, a conversation
//! key, a phone number), most names with one timer: that one is held without a list.

use hashbrown::HashMap;

use crate::state::{TimerKey, Timers};

/// The timers waiting on one name, in the order they were indexed.
#[derive(Debug)]
struct Waiters {
    first: TimerKey,
    rest: Vec<TimerKey>,
}

impl Waiters {
    /// Keeps the timers `keep` says yes to; false when none is left.
    fn retain(&mut self, keep: impl Fn(&TimerKey) -> bool) -> bool {
        let mut all = std::mem::take(&mut self.rest);
        all.insert(0, self.first.clone());
        all.retain(keep);
        if all.is_empty() {
            return false;
        }
        self.first = all.remove(0);
        self.rest = all;
        true
    }
}

/// Timer keys by a 64-bit name digest.
#[derive(Debug, Default)]
pub(crate) struct ElsewhereIndex {
    by_name: HashMap<u64, Waiters>,
}

impl ElsewhereIndex {
    /// Files `key` under `at`; entries of timers gone from `timers` are dropped once the index
    /// outgrows them.
    pub(crate) fn insert(&mut self, at: u64, key: TimerKey, timers: &Timers) {
        match self.by_name.get_mut(&at) {
            Some(w) => w.rest.push(key),
            None => {
                self.by_name.insert(at, Waiters { first: key, rest: Vec::new() });
            }
        }
        if self.by_name.len() > 2 * timers.len() + 1024 {
            self.by_name.retain(|_, w| w.retain(|k| timers.contains_key(k)));
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
