//! Profile merges the engine made whose event the reorder buffer has not released yet: an
//! event the engine gave a joined profile meanwhile takes them along (see
//! [`PendingMerges::behind`]).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use hashbrown::HashMap;
use omnistitch_model::{EventTime, ProfileId};

/// Profile merges an event caused, in order: (survivor, absorbed).
pub type Merges = Vec<(ProfileId, ProfileId)>;

/// A merge whose event has not been released yet.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct Pending {
    survivor: ProfileId,
    absorbed: ProfileId,
}

/// One tenant's pending merges, and where each now leads.
///
/// Indexed so that no step walks every pending merge: a busy tenant holds the merges of all
/// its events within the allowed lateness, and the buffer releases after every event.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct PendingMerges {
    /// By number, in arrival order.
    pending: BTreeMap<u64, Pending>,
    /// (event time, number) of each pending merge, in release order.
    by_time: BTreeSet<(EventTime, u64)>,
    /// Absorbed profile -> (its survivor, the merge's number), for every merge noted since
    /// the oldest pending one: the links a pending merge's survivor may since have followed
    /// (a merge noted earlier cannot be on its way: the engine names only live profiles).
    links: HashMap<ProfileId, (ProfileId, u64)>,
    /// (number, absorbed profile) of each link, in the order noted, to drop them oldest first.
    link_order: VecDeque<(u64, ProfileId)>,
    /// Per profile, the numbers of the pending merges that lead to it (their survivor,
    /// through `links`): most events' profiles have none. Filed as each merge is noted: an
    /// absorbed profile's id never comes back (ids derive from the event that created the
    /// profile, applied once), so the links a pending merge leads through stay as they were.
    roots: HashMap<ProfileId, BTreeSet<u64>>,
    next_seq: u64,
}

impl PendingMerges {
    /// Where `profile` leads now, through the merges noted.
    fn resolve(&self, mut profile: ProfileId) -> ProfileId {
        // Bounded: links never form a loop (an absorbed profile absorbs nothing later), but a
        // loop must not hang the thread.
        for _ in 0..=self.links.len() {
            match self.links.get(&profile) {
                Some(&(next, _)) => profile = next,
                None => break,
            }
        }
        profile
    }

    /// Files the merges an arriving event of time `time` caused.
    pub(crate) fn note(&mut self, time: EventTime, merges: &Merges) {
        for &(survivor, absorbed) in merges {
            let seq = self.next_seq;
            self.next_seq += 1;
            self.links.insert(absorbed, (survivor, seq));
            self.link_order.push_back((seq, absorbed));
            let root = self.resolve(survivor);
            // The pending merges that led to the absorbed profile lead to the survivor now.
            let mut moved = self.roots.remove(&absorbed).unwrap_or_default();
            let led = self.roots.entry(root).or_default();
            // The smaller set into the larger: a hub absorbing profile after profile does not
            // copy its own each time.
            if led.len() < moved.len() {
                std::mem::swap(led, &mut moved);
            }
            led.extend(moved);
            led.insert(seq);
            self.pending.insert(seq, Pending { survivor, absorbed });
            self.by_time.insert((time, seq));
        }
    }

    /// Drops the merges whose event is released (before `until`), and the links no pending
    /// merge can follow any more.
    pub(crate) fn forget_before(&mut self, until: EventTime) {
        let mut dropped = false;
        while let Some(&(time, seq)) = self.by_time.first() {
            if time >= until {
                break;
            }
            self.by_time.pop_first();
            let Some(m) = self.pending.remove(&seq) else { continue };
            dropped = true;
            let root = self.resolve(m.survivor);
            if let Some(led) = self.roots.get_mut(&root) {
                led.remove(&seq);
                if led.is_empty() {
                    self.roots.remove(&root);
                }
            }
        }
        if !dropped {
            return;
        }
        let oldest = self.pending.first_key_value().map_or(self.next_seq, |(&seq, _)| seq);
        while let Some(&(seq, absorbed)) = self.link_order.front() {
            if seq >= oldest {
                break;
            }
            self.link_order.pop_front();
            if self.links.get(&absorbed).is_some_and(|&(_, s)| s == seq) {
                self.links.remove(&absorbed);
            }
        }
    }

    /// Forgets everything (every event is released).
    pub(crate) fn clear(&mut self) {
        self.pending.clear();
        self.by_time.clear();
        self.links.clear();
        self.link_order.clear();
        self.roots.clear();
    }

    /// The pending merges that made `profile` what it is (into it, or into a profile merged
    /// into it since), in arrival order. An event the engine gave that profile after them took
    /// the merges for granted: its identifiers may be those that join the profiles, while the
    /// event that joined them first comes later in event time. The event takes them along, so
    /// that the detector sees it on the joined profile however the two arrived.
    pub(crate) fn behind(&self, profile: ProfileId) -> Merges {
        let Some(led) = self.roots.get(&profile) else { return Vec::new() };
        led.iter().filter_map(|s| self.pending.get(s)).map(|m| (m.survivor, m.absorbed)).collect()
    }

    /// Merges pending and links kept (memory is proportional to them).
    #[cfg(test)]
    pub(crate) fn held(&self) -> (usize, usize) {
        (self.pending.len(), self.links.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: u8) -> ProfileId {
        ProfileId::derive("acme", &format!("p{n}"))
    }

    fn at(s: i64) -> EventTime {
        EventTime(s * 1_000)
    }

    #[test]
    fn a_profile_takes_the_pending_merges_of_its_whole_tree() {
        let mut m = PendingMerges::default();
        m.note(at(100), &vec![(p(2), p(1))]);
        m.note(at(120), &vec![(p(3), p(2))]);
        m.note(at(90), &vec![(p(9), p(8))]);
        assert_eq!(m.behind(p(3)), [(p(2), p(1)), (p(3), p(2))]);
        assert_eq!(m.behind(p(2)), [], "absorbed: the engine no longer names it");
        assert_eq!(m.behind(p(9)), [(p(9), p(8))]);
        assert_eq!(m.behind(p(5)), []);
    }

    /// A merge released (and forgotten) still links the profiles of a pending one to where
    /// they lead now.
    #[test]
    fn a_released_merge_still_leads_a_pending_one_to_its_profile() {
        let mut m = PendingMerges::default();
        // At 100 s, 1 joins 2; an event of 50 s, arriving after, joins 2 into 3.
        m.note(at(100), &vec![(p(2), p(1))]);
        m.note(at(50), &vec![(p(3), p(2))]);
        m.forget_before(at(51));
        assert_eq!(m.behind(p(3)), [(p(2), p(1))]);
        // Once that one is released too, nothing is held.
        m.forget_before(at(101));
        assert_eq!(m.behind(p(3)), []);
        assert_eq!(m.held(), (0, 0));
    }

    #[test]
    fn links_older_than_every_pending_merge_are_dropped() {
        let mut m = PendingMerges::default();
        for i in 0..50u8 {
            m.note(at(i64::from(i)), &vec![(p(200), p(i))]);
            m.forget_before(at(i64::from(i) - 5));
        }
        let (pending, links) = m.held();
        assert!(pending <= 6 && links <= 6, "{pending} pending, {links} links");
        m.clear();
        assert_eq!(m.held(), (0, 0));
        assert_eq!(m.behind(p(200)), []);
    }

    /// The indexed merges answer as a plain scan of every pending merge does (the form this
    /// had first), over random merges of live profiles, times within a moving window and
    /// releases.
    #[test]
    fn the_indexes_answer_as_a_plain_scan() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};

        /// The plain scan: pending merges in arrival order, roots counted.
        #[derive(Default)]
        struct Plain {
            pending: Vec<(EventTime, u64, ProfileId, ProfileId)>,
            links: HashMap<ProfileId, (ProfileId, u64)>,
            next: u64,
        }
        impl Plain {
            fn resolve(&self, mut p: ProfileId) -> ProfileId {
                while let Some(&(n, _)) = self.links.get(&p) {
                    p = n;
                }
                p
            }
            fn note(&mut self, time: EventTime, merges: &Merges) {
                for &(s, a) in merges {
                    self.links.insert(a, (s, self.next));
                    self.pending.push((time, self.next, s, a));
                    self.next += 1;
                }
            }
            fn forget_before(&mut self, until: EventTime) {
                self.pending.retain(|m| m.0 >= until);
                let oldest = self.pending.iter().map(|m| m.1).min().unwrap_or(self.next);
                self.links.retain(|_, &mut (_, seq)| seq >= oldest);
            }
            fn behind(&self, p: ProfileId) -> Merges {
                self.pending.iter().filter(|m| self.resolve(m.2) == p).map(|m| (m.2, m.3)).collect()
            }
        }

        // Each step: a new profile, a merge of two live ones at a time near the clock, or a
        // release up to some way behind the clock.
        let step = (0u8..3, any::<u16>(), any::<u16>(), 0i64..40);
        let mut runner = TestRunner::new(Config { cases: 300, ..Config::default() });
        runner
            .run(&proptest::collection::vec(step, 1..200), |steps| {
                let (mut indexed, mut plain) = (PendingMerges::default(), Plain::default());
                let mut live: Vec<ProfileId> = (0..3).map(p).collect();
                let mut clock = 100i64;
                let mut made = 3u32;
                for (kind, a, b, dt) in steps {
                    clock += dt / 4;
                    match kind {
                        0 => {
                            made += 1;
                            live.push(ProfileId::derive("acme", &format!("n{made}")));
                        }
                        1 if live.len() >= 2 => {
                            let s = live[usize::from(a) % live.len()];
                            let absorbed = live.remove(usize::from(b) % live.len());
                            if s != absorbed {
                                let merges = vec![(s, absorbed)];
                                indexed.note(at(clock - dt), &merges);
                                plain.note(at(clock - dt), &merges);
                            } else {
                                live.push(absorbed);
                            }
                        }
                        _ => {
                            indexed.forget_before(at(clock - dt));
                            plain.forget_before(at(clock - dt));
                        }
                    }
                    for &profile in &live {
                        prop_assert_eq!(indexed.behind(profile), plain.behind(profile));
                    }
                    prop_assert_eq!(indexed.held(), (plain.pending.len(), plain.links.len()));
                }
                Ok(())
            })
            .unwrap();
    }
}
