//! Profile merges the engine made whose event the reorder buffer has not released yet: an
//! event the engine gave a joined profile meanwhile takes them along (see
//! [`PendingMerges::behind`]).

use hashbrown::HashMap;
use omnistitch_model::{EventTime, ProfileId};

/// Profile merges an event caused, in order: (survivor, absorbed).
pub type Merges = Vec<(ProfileId, ProfileId)>;

/// A merge whose event has not been released yet.
#[derive(Debug, Clone, Copy)]
struct Pending {
    /// Its event's time.
    time: EventTime,
    /// Its number in arrival order.
    seq: u64,
    survivor: ProfileId,
    absorbed: ProfileId,
}

/// One tenant's pending merges, and where each now leads.
#[derive(Debug, Default)]
pub(crate) struct PendingMerges {
    /// In arrival order.
    pending: Vec<Pending>,
    /// Absorbed profile -> (its survivor, the merge's number), for every merge noted since
    /// the oldest pending one: the links a pending merge's survivor may since have followed
    /// (a merge noted earlier cannot be on its way: the engine names only live profiles).
    links: HashMap<ProfileId, (ProfileId, u64)>,
    /// Per profile, how many pending merges lead to it (their survivor, through `links`):
    /// most events' profiles have none.
    roots: HashMap<ProfileId, u32>,
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
            let root = self.resolve(survivor);
            // The pending merges that led to the absorbed profile lead to the survivor now.
            let moved = self.roots.remove(&absorbed).unwrap_or(0);
            *self.roots.entry(root).or_default() += moved + 1;
            self.pending.push(Pending { time, seq, survivor, absorbed });
        }
    }

    /// Drops the merges whose event is released (before `until`), and the links no pending
    /// merge can follow any more.
    pub(crate) fn forget_before(&mut self, until: EventTime) {
        if self.pending.iter().all(|m| m.time >= until) {
            return;
        }
        let (kept, gone): (Vec<Pending>, Vec<Pending>) =
            std::mem::take(&mut self.pending).into_iter().partition(|m| m.time >= until);
        for m in gone {
            let root = self.resolve(m.survivor);
            if let Some(n) = self.roots.get_mut(&root) {
                *n -= 1;
                if *n == 0 {
                    self.roots.remove(&root);
                }
            }
        }
        self.pending = kept;
        let oldest = self.pending.iter().map(|m| m.seq).min().unwrap_or(self.next_seq);
        self.links.retain(|_, &mut (_, seq)| seq >= oldest);
    }

    /// Forgets everything (every event is released).
    pub(crate) fn clear(&mut self) {
        self.pending.clear();
        self.links.clear();
        self.roots.clear();
    }

    /// The pending merges that made `profile` what it is (into it, or into a profile merged
    /// into it since), in arrival order. An event the engine gave that profile after them took
    /// the merges for granted: its identifiers may be those that join the profiles, while the
    /// event that joined them first comes later in event time. The event takes them along, so
    /// that the detector sees it on the joined profile however the two arrived.
    pub(crate) fn behind(&self, profile: ProfileId) -> Merges {
        if !self.roots.contains_key(&profile) {
            return Vec::new();
        }
        self.pending.iter().filter(|m| self.resolve(m.survivor) == profile).map(|m| (m.survivor, m.absorbed)).collect()
    }

    /// Merges pending and links kept (memory is proportional to them).
    #[cfg(test)]
    fn held(&self) -> (usize, usize) {
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
}
