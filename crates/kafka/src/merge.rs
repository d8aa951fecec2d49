//! The event-time merge of one shard's input partitions.
//!
//! A shard is one partition index across the four input topics (inputs are co-partitioned by
//! tenant). Its records are applied in one reproducible order: the record whose event time is
//! earliest among the partition heads goes first, ties to the channel first in
//! [`MERGE_ORDER`](crate::config::MERGE_ORDER), and a head is only taken once every partition
//! either has a record waiting or has reached its end. This is the order `replay` uses over
//! files, so the service and a replay of the same records agree, and a restart from committed
//! offsets re-applies records in the order they were first applied.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A record waiting in a partition queue.
pub trait Timed {
    /// The merge key: event time in milliseconds (records without a trustworthy time go first).
    fn merge_time(&self) -> i64;

    /// About how many bytes of memory the record holds while it waits (0 if not counted).
    fn weight(&self) -> usize {
        0
    }
}

#[derive(Debug)]
struct Lane<T> {
    items: VecDeque<T>,
    /// The items' [`Timed::weight`]s, summed.
    bytes: usize,
    at_end: bool,
    blocked_since: Option<Instant>,
    /// Passed over since it was last blocked (counted once).
    passed_over: bool,
    /// Its next record is fetched but cannot be decoded yet (the schema registry is away):
    /// the merge waits for it however long it takes.
    stalled: bool,
}

impl<T> Default for Lane<T> {
    fn default() -> Self {
        Lane {
            items: VecDeque::new(),
            bytes: 0,
            at_end: false,
            blocked_since: None,
            passed_over: false,
            stalled: false,
        }
    }
}

/// The four partition queues of a shard, merged.
#[derive(Debug)]
pub struct ShardMerge<T> {
    lanes: [Lane<T>; 4],
    skipped_waits: u64,
}

impl<T: Timed> Default for ShardMerge<T> {
    fn default() -> Self {
        ShardMerge { lanes: Default::default(), skipped_waits: 0 }
    }
}

impl<T: Timed> ShardMerge<T> {
    /// Queues a record of lane `lane` (the channel's position in the merge order).
    pub fn push(&mut self, lane: usize, item: T) {
        let l = &mut self.lanes[lane];
        l.bytes += item.weight();
        l.items.push_back(item);
        l.at_end = false;
        l.blocked_since = None;
        l.passed_over = false;
        l.stalled = false;
    }

    /// Lane `lane`'s next record is fetched but cannot be decoded yet: nothing of the lane
    /// goes before it, and the merge waits for it rather than pass the lane over, until the
    /// record is pushed (or the merge cleared).
    pub fn stall(&mut self, lane: usize) {
        self.lanes[lane].stalled = true;
    }

    /// Lane `lane` reached the end of its partition: the merge may go on without it.
    pub fn end_of_partition(&mut self, lane: usize) {
        let l = &mut self.lanes[lane];
        l.at_end = true;
        l.blocked_since = None;
        l.passed_over = false;
    }

    /// Forgets everything queued (revocation, rewind): the partitions will be fetched again.
    pub fn clear(&mut self) {
        for l in &mut self.lanes {
            *l = Lane::default();
        }
    }

    /// Records queued in `lane`.
    pub fn queued(&self, lane: usize) -> usize {
        self.lanes[lane].items.len()
    }

    /// Bytes (by [`Timed::weight`]) queued in `lane`.
    pub fn queued_bytes(&self, lane: usize) -> usize {
        self.lanes[lane].bytes
    }

    /// Bytes queued in all lanes.
    pub fn total_queued_bytes(&self) -> usize {
        self.lanes.iter().map(|l| l.bytes).sum()
    }

    /// Records queued in all lanes.
    pub fn total_queued(&self) -> usize {
        self.lanes.iter().map(|l| l.items.len()).sum()
    }

    /// Whether every lane has reached the end of its partition with nothing queued: the shard
    /// has applied everything there is.
    pub fn caught_up(&self) -> bool {
        self.lanes.iter().all(|l| l.items.is_empty() && l.at_end && !l.stalled)
    }

    /// Times a lane was passed over after waiting `max_wait` without data or end (once per
    /// silence), since the last call; resets the count.
    pub fn take_skipped_waits(&mut self) -> u64 {
        std::mem::take(&mut self.skipped_waits)
    }

    /// The next record in merge order, with its lane, or `None` when a lane must be waited for
    /// (or nothing is queued). A lane empty for longer than `max_wait` without reaching its end
    /// is passed over.
    pub fn pop(&mut self, now: Instant, max_wait: Duration) -> Option<(usize, T)> {
        let mut best: Option<(i64, usize)> = None;
        // Every lane is looked at, so that lanes silent at once are waited for at once (one
        // wait, not one after another).
        let mut wait = false;
        for (i, l) in self.lanes.iter_mut().enumerate() {
            match l.items.front() {
                Some(head) => {
                    let t = head.merge_time();
                    if best.is_none_or(|(bt, _)| t < bt) {
                        best = Some((t, i));
                    }
                }
                None if l.stalled => wait = true,
                None if l.at_end => {}
                None => {
                    let since = *l.blocked_since.get_or_insert(now);
                    if now.duration_since(since) < max_wait {
                        wait = true;
                        continue;
                    }
                    if !l.passed_over {
                        l.passed_over = true;
                        self.skipped_waits += 1;
                    }
                }
            }
        }
        if wait {
            return None;
        }
        let (_, i) = best?;
        let l = &mut self.lanes[i];
        let item = l.items.pop_front()?;
        l.bytes = l.bytes.saturating_sub(item.weight());
        Some((i, item))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Timed for (i64, u32) {
        fn merge_time(&self) -> i64 {
            self.0
        }
    }

    /// A record that weighs its second field in bytes.
    struct Heavy(i64, usize);

    impl Timed for Heavy {
        fn merge_time(&self) -> i64 {
            self.0
        }
        fn weight(&self) -> usize {
            self.1
        }
    }

    #[test]
    fn lanes_count_the_bytes_they_hold() {
        let mut m = ShardMerge::default();
        m.push(0, Heavy(1, 64 << 10));
        m.push(0, Heavy(2, 64 << 10));
        m.push(1, Heavy(3, 10));
        assert_eq!((m.queued_bytes(0), m.queued_bytes(1), m.total_queued_bytes()), (128 << 10, 10, (128 << 10) + 10));
        m.end_of_partition(2);
        m.end_of_partition(3);
        let (lane, first) = m.pop(Instant::now(), Duration::from_secs(1)).unwrap();
        assert_eq!((lane, first.0, m.queued_bytes(0)), (0, 1, 64 << 10));
        m.clear();
        assert_eq!(m.total_queued_bytes(), 0);
    }

    fn drain(m: &mut ShardMerge<(i64, u32)>) -> Vec<(usize, (i64, u32))> {
        std::iter::from_fn(|| m.pop(Instant::now(), Duration::from_secs(3600))).collect()
    }

    /// Three lanes silent at once are passed over after one wait, not three in a row.
    #[test]
    fn lanes_silent_at_once_are_waited_for_at_once() {
        let mut m = ShardMerge::default();
        m.push(0, (1, 0));
        let (start, wait) = (Instant::now(), Duration::from_secs(10));
        assert_eq!(m.pop(start, wait), None, "lanes 1 to 3 are waited for");
        assert_eq!(m.pop(start + wait, wait), Some((0, (1, 0))), "all three passed over after one wait");
        assert_eq!(m.take_skipped_waits(), 3);
    }

    #[test]
    fn a_stalled_lane_is_waited_for_past_the_silence_limit() {
        let mut m = ShardMerge::default();
        for lane in 1..4 {
            m.end_of_partition(lane);
        }
        m.push(1, (9, 0));
        m.stall(0);
        let later = Instant::now() + Duration::from_secs(10);
        assert_eq!(m.pop(later, Duration::from_millis(1)), None, "not passed over, however long");
        m.push(0, (3, 1));
        assert_eq!(m.pop(later, Duration::from_millis(1)), Some((0, (3, 1))));
        m.end_of_partition(0);
        assert_eq!(m.pop(later, Duration::from_millis(1)), Some((1, (9, 0))));
        assert_eq!(m.take_skipped_waits(), 0);
    }

    #[test]
    fn waits_for_every_lane_then_merges_by_time_then_lane() {
        let mut m = ShardMerge::default();
        m.push(2, (5, 0));
        m.push(0, (7, 1));
        assert!(drain(&mut m).is_empty(), "lanes 1 and 3 have neither data nor end");
        m.end_of_partition(3);
        m.push(1, (5, 2));
        // 5@lane1 before 5@lane2 (tie: lane order), then lane 1 is empty and not at its end.
        assert_eq!(drain(&mut m), vec![(1, (5, 2))]);
        m.end_of_partition(1);
        assert_eq!(drain(&mut m), vec![(2, (5, 0))]);
        m.end_of_partition(2);
        assert_eq!(drain(&mut m), vec![(0, (7, 1))]);
        assert_eq!(m.total_queued(), 0);
        assert!(!m.caught_up(), "lane 0 has not reached its end");
        m.end_of_partition(0);
        assert!(m.caught_up());
        m.stall(2);
        assert!(!m.caught_up(), "a record of lane 2 waits for the registry");
        m.push(2, (8, 3));
        assert!(!m.caught_up(), "a record is queued");
    }

    #[test]
    fn lanes_keep_their_own_order_even_when_it_is_not_time_order() {
        let mut m = ShardMerge::default();
        for l in 1..4 {
            m.end_of_partition(l);
        }
        m.push(0, (9, 0));
        m.push(0, (1, 1));
        m.end_of_partition(0);
        assert_eq!(drain(&mut m), vec![(0, (9, 0)), (0, (1, 1))]);
    }

    #[test]
    fn a_silent_lane_is_passed_over_after_the_wait() {
        let mut m = ShardMerge::default();
        m.push(0, (1, 0));
        m.end_of_partition(1);
        m.end_of_partition(2);
        let t0 = Instant::now();
        assert!(m.pop(t0, Duration::from_millis(50)).is_none());
        assert!(m.pop(t0 + Duration::from_millis(10), Duration::from_millis(50)).is_none());
        m.push(0, (2, 0));
        assert_eq!(m.pop(t0 + Duration::from_millis(60), Duration::from_millis(50)), Some((0, (1, 0))));
        assert_eq!(m.pop(t0 + Duration::from_millis(70), Duration::from_millis(50)), Some((0, (2, 0))));
        assert_eq!(m.take_skipped_waits(), 1, "one silence, counted once");
        assert_eq!(m.take_skipped_waits(), 0);
        m.push(3, (0, 1));
        assert_eq!(m.queued(3), 1);
        m.clear();
        assert_eq!(m.total_queued(), 0);
    }
}
