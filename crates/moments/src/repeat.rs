//! What repeat contacts need of a profile's past: its recent conversation starts and case
//! resolutions, kept apart so that a merge can recount the windows of both profiles.
//!
//! A start is the `count`-th of its window when exactly `count` starts lie in
//! `[start − window, start]` after the latest resolution before it. Starts and resolutions are
//! kept for two windows (a merge can reveal a window that ended a while ago) and at most
//! [`MAX_MARKS`] of each.

use std::collections::VecDeque;

use crate::state::{EventRef, Mark};

/// Most starts, and most resolutions, remembered per profile: more than the largest count
/// the configuration allows.
pub(crate) const MAX_MARKS: usize = 128;

/// A conversation start, and whether an emitted repeat contact already counted it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Start {
    pub(crate) mark: Mark,
    pub(crate) counted: bool,
}

/// Recent conversation starts and resolutions of one profile, each in (time, event id) order.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct RepeatHistory {
    #[serde(deserialize_with = "starts_in_order")]
    starts: VecDeque<Start>,
    #[serde(deserialize_with = "resolutions_in_order")]
    resolutions: VecDeque<Mark>,
}

/// Whether each item is before the next one.
fn increasing<'a>(marks: impl Iterator<Item = &'a Mark> + Clone) -> bool {
    marks.clone().zip(marks.skip(1)).all(|(a, b)| a < b)
}

/// Starts read back from a snapshot, refused out of order (the searches rely on it).
fn starts_in_order<'de, D: serde::Deserializer<'de>>(d: D) -> Result<VecDeque<Start>, D::Error> {
    let starts = <VecDeque<Start> as serde::Deserialize>::deserialize(d)?;
    match increasing(starts.iter().map(|s| &s.mark)) {
        true => Ok(starts),
        false => Err(serde::de::Error::custom("conversation starts out of order")),
    }
}

/// Resolutions read back from a snapshot, refused out of order.
fn resolutions_in_order<'de, D: serde::Deserializer<'de>>(d: D) -> Result<VecDeque<Mark>, D::Error> {
    let resolutions = <VecDeque<Mark> as serde::Deserialize>::deserialize(d)?;
    match increasing(resolutions.iter()) {
        true => Ok(resolutions),
        false => Err(serde::de::Error::custom("case resolutions out of order")),
    }
}

/// Inserts `item` in order unless an equal one is there; keeps the newest `MAX_MARKS`.
fn insert_sorted<T: Ord>(list: &mut VecDeque<T>, item: T) -> bool {
    let at = list.partition_point(|m| *m < item);
    if list.get(at) == Some(&item) {
        return false;
    }
    if list.capacity() == 0 {
        list.reserve_exact(1); // most profiles resolve one case
    }
    list.insert(at, item);
    while list.len() > MAX_MARKS {
        list.pop_front();
    }
    true
}

impl RepeatHistory {
    /// Records a conversation start (a redelivered one is ignored).
    pub(crate) fn push_start(&mut self, mark: Mark) {
        let at = self.starts.partition_point(|s| s.mark < mark);
        if self.starts.get(at).is_some_and(|s| s.mark == mark) {
            return;
        }
        if self.starts.capacity() == 0 {
            self.starts.reserve_exact(1); // most profiles start one conversation
        }
        self.starts.insert(at, Start { mark, counted: false });
        while self.starts.len() > MAX_MARKS {
            self.starts.pop_front();
        }
    }

    /// Forgets the start `mark` (a conversation found, at a merge, to be another's).
    pub(crate) fn remove_start(&mut self, mark: &Mark) {
        let at = self.starts.partition_point(|s| s.mark < *mark);
        if self.starts.get(at).is_some_and(|s| s.mark == *mark) {
            self.starts.remove(at);
        }
    }

    /// Records a case resolution.
    pub(crate) fn push_resolution(&mut self, mark: Mark) {
        insert_sorted(&mut self.resolutions, mark);
    }

    /// Whether it holds neither starts nor resolutions.
    pub(crate) fn is_empty(&self) -> bool {
        self.starts.is_empty() && self.resolutions.is_empty()
    }

    /// The starts.
    pub(crate) fn starts(&self) -> impl Iterator<Item = &Start> {
        self.starts.iter()
    }

    /// Indexes (into the starts) of the starts counted at `at`: those in `[at − window, at]`
    /// after the latest resolution before `at`.
    pub(crate) fn window(&self, at: &Mark, window: i64) -> std::ops::Range<usize> {
        let floor = at.time.0.saturating_sub(window);
        let end = self.starts.partition_point(|s| s.mark <= *at);
        let reset = self.resolutions.iter().rev().find(|r| *r < at);
        let begin = self.starts.partition_point(|s| s.mark.time.0 < floor || reset.is_some_and(|r| s.mark <= *r));
        begin..end.max(begin)
    }

    /// Marks of the starts in `range`.
    pub(crate) fn marks(&self, range: std::ops::Range<usize>) -> Vec<Mark> {
        self.starts.range(range).map(|s| s.mark.clone()).collect()
    }

    /// Whether any start in `range` was counted by an emitted repeat contact.
    pub(crate) fn any_counted(&self, range: std::ops::Range<usize>) -> bool {
        self.starts.range(range).any(|s| s.counted)
    }

    /// Notes that an emitted repeat contact counted the starts in `range`.
    pub(crate) fn set_counted(&mut self, range: std::ops::Range<usize>) {
        for s in self.starts.range_mut(range) {
            s.counted = true;
        }
    }

    /// Event ids of the starts that were the `count`-th of their window.
    pub(crate) fn completing(&self, count: usize, window: i64) -> Vec<EventRef> {
        self.starts
            .iter()
            .filter(|s| self.window(&s.mark, window).len() == count)
            .map(|s| s.mark.event_id.clone())
            .collect()
    }

    /// Takes in the history of a profile merged into this one.
    pub(crate) fn absorb(&mut self, other: RepeatHistory) {
        for s in other.starts {
            let at = self.starts.partition_point(|m| m.mark < s.mark);
            match self.starts.get_mut(at) {
                Some(mine) if mine.mark == s.mark => mine.counted |= s.counted,
                _ => self.starts.insert(at, s),
            }
        }
        while self.starts.len() > MAX_MARKS {
            self.starts.pop_front();
        }
        for r in other.resolutions {
            insert_sorted(&mut self.resolutions, r);
        }
    }

    /// Forgets starts and resolutions before `floor` (ms).
    pub(crate) fn prune(&mut self, floor: i64) {
        while self.starts.front().is_some_and(|s| s.mark.time.0 < floor) {
            self.starts.pop_front();
        }
        while self.resolutions.front().is_some_and(|m| m.time.0 < floor) {
            self.resolutions.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use omnistitch_model::{Channel, EventTime};
    use proptest::prelude::*;

    use super::*;

    const DAY: i64 = 86_400_000;

    fn mark(day: f64, id: &str) -> Mark {
        Mark { time: EventTime((day * DAY as f64) as i64), event_id: EventRef::new(id), channel: Channel::Chat }
    }

    fn ids(h: &RepeatHistory, r: std::ops::Range<usize>) -> Vec<String> {
        h.marks(r).iter().map(|m| m.event_id.to_string()).collect()
    }

    #[test]
    fn a_history_read_back_out_of_order_is_refused() {
        let mut h = RepeatHistory::default();
        h.push_start(mark(1.0, "a"));
        h.push_start(mark(2.0, "b"));
        h.push_resolution(mark(1.5, "r"));
        h.push_resolution(mark(3.0, "s"));
        let read = |h: &RepeatHistory| postcard::from_bytes::<RepeatHistory>(&postcard::to_stdvec(h).unwrap());
        assert!(read(&h).is_ok_and(|back| back.starts().count() == 2));
        let mut starts = h.clone();
        starts.starts.swap(0, 1);
        assert!(read(&starts).is_err(), "starts out of order");
        let mut resolutions = h.clone();
        resolutions.resolutions.swap(0, 1);
        assert!(read(&resolutions).is_err(), "resolutions out of order");
    }

    #[test]
    fn a_window_counts_starts_since_the_latest_resolution_before_it() {
        let mut h = RepeatHistory::default();
        for (d, id) in [(0.0, "a"), (1.0, "b"), (3.0, "c"), (9.0, "e")] {
            h.push_start(mark(d, id));
        }
        h.push_resolution(mark(2.0, "r"));
        assert_eq!(ids(&h, h.window(&mark(1.0, "b"), 7 * DAY)), ["a", "b"]);
        // The resolution at day 2 resets what day 3 sees, not what day 1 saw.
        assert_eq!(ids(&h, h.window(&mark(3.0, "c"), 7 * DAY)), ["c"]);
        // Day 9 sees day 3 (within seven days) but not day 1.
        assert_eq!(ids(&h, h.window(&mark(9.0, "e"), 7 * DAY)), ["c", "e"]);
        assert_eq!(h.completing(2, 7 * DAY), vec![EventRef::new("b"), EventRef::new("e")]);
    }

    #[test]
    fn merged_histories_recount_and_keep_what_was_counted() {
        let (mut a, mut b) = (RepeatHistory::default(), RepeatHistory::default());
        a.push_start(mark(0.0, "a"));
        a.push_start(mark(2.0, "c"));
        b.push_start(mark(1.0, "b"));
        b.push_start(mark(2.0, "c"));
        b.set_counted(0..1);
        b.push_resolution(mark(1.5, "r"));
        a.absorb(b);
        assert_eq!(ids(&a, 0..3), ["a", "b", "c"]);
        assert!(a.any_counted(0..2) && !a.any_counted(2..3));
        assert_eq!(ids(&a, a.window(&mark(2.0, "c"), 7 * DAY)), ["c"]);
        a.prune(DAY);
        assert_eq!(ids(&a, 0..a.starts().count()), ["b", "c"]);
    }

    proptest! {
        /// Order of arrival and redeliveries do not change the history.
        #[test]
        fn insertion_order_does_not_matter(days in proptest::collection::vec(0u32..40, 1..30), seed in any::<u64>()) {
            let marks: Vec<Mark> = days.iter().enumerate().map(|(i, d)| mark(f64::from(*d) / 4.0, &format!("e{i}"))).collect();
            let mut sorted = RepeatHistory::default();
            for m in &marks {
                sorted.push_start(m.clone());
            }
            let mut shuffled = marks.clone();
            let mut x = seed | 1;
            for i in (1..shuffled.len()).rev() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                shuffled.swap(i, (x % (i as u64 + 1)) as usize);
            }
            let mut other = RepeatHistory::default();
            for m in shuffled.iter().chain(&marks) {
                other.push_start(m.clone());
            }
            prop_assert_eq!(sorted.completing(3, 7 * DAY), other.completing(3, 7 * DAY));
            prop_assert_eq!(sorted.starts().count(), marks.len());
            // The same history, start for start, whatever the order and the redeliveries.
            prop_assert_eq!(sorted.starts().collect::<Vec<_>>(), other.starts().collect::<Vec<_>>());
        }
    }
}
