//! Durations in bounded memory: a log-bucket histogram with a fixed relative error.
//!
//! Bucket `i` holds durations in `(γ^(i-1), γ^i]` milliseconds with `γ = (1+α)/(1-α)`, and a
//! quantile reports its bucket's point `2γ^i/(γ+1)`, which is within `α` (relative) of every
//! value in the bucket (the DDSketch construction). With `α = 1%` and durations capped at
//! `2^41` ms (about 70 years) there are at most about 1,420 buckets, allocated only up to the
//! largest duration seen. Zero has its own exact bucket. Count and sum are exact.

/// Relative accuracy of quantiles: a reported quantile is within 1% of the exact one.
pub(crate) const RELATIVE_ERROR: f64 = 0.01;
const GAMMA: f64 = (1.0 + RELATIVE_ERROR) / (1.0 - RELATIVE_ERROR);
/// Longer durations are recorded as this (about 70 years), which bounds the bucket count.
const MAX_MS: i64 = 1 << 41;

/// Counts of durations in milliseconds, by logarithmic bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct LogHistogram {
    zeros: u64,
    buckets: Vec<u64>,
    count: u64,
    sum_ms: u128,
}

fn bucket_of(ms: i64) -> usize {
    // ms >= 1, so the log is >= 0; the ceiling puts γ^i itself in bucket i.
    let i = ((ms as f64).ln() / GAMMA.ln()).ceil();
    i.max(0.0) as usize
}

fn point_of(bucket: usize) -> f64 {
    2.0 * GAMMA.powi(bucket as i32) / (GAMMA + 1.0)
}

impl LogHistogram {
    /// Records one duration; negative ones count as zero.
    pub(crate) fn record(&mut self, ms: i64) {
        let ms = ms.clamp(0, MAX_MS);
        self.count += 1;
        self.sum_ms += ms as u128;
        if ms == 0 {
            self.zeros += 1;
            return;
        }
        let b = bucket_of(ms);
        if self.buckets.len() <= b {
            self.buckets.resize(b + 1, 0);
        }
        self.buckets[b] += 1;
    }

    /// Adds every duration of `other`.
    pub(crate) fn add(&mut self, other: &LogHistogram) {
        self.zeros += other.zeros;
        self.count += other.count;
        self.sum_ms += other.sum_ms;
        if self.buckets.len() < other.buckets.len() {
            self.buckets.resize(other.buckets.len(), 0);
        }
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            *mine += theirs;
        }
    }

    /// Durations recorded.
    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    /// Exact mean in milliseconds; `None` when empty.
    pub(crate) fn mean_ms(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum_ms as f64 / self.count as f64)
    }

    /// The nearest-rank `q` quantile (`0 < q <= 1`) in milliseconds, within [`RELATIVE_ERROR`];
    /// `None` when empty.
    pub(crate) fn quantile_ms(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        // Nearest rank: the smallest value with at least q·n values at or below it.
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = self.zeros;
        if seen >= rank {
            return Some(0.0);
        }
        for (b, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(point_of(b));
            }
        }
        // Unreachable while counts agree; the largest bucket is the honest answer.
        self.buckets.len().checked_sub(1).map(point_of)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn exact(sorted: &[i64], q: f64) -> f64 {
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1] as f64
    }

    #[test]
    fn empty_has_no_mean_and_no_quantiles() {
        let h = LogHistogram::default();
        assert_eq!(h.mean_ms(), None);
        assert_eq!(h.quantile_ms(0.5), None);
    }

    #[test]
    fn zero_is_exact_and_mean_is_exact() {
        let mut h = LogHistogram::default();
        for ms in [0, 0, 1_000, 3_000] {
            h.record(ms);
        }
        assert_eq!(h.quantile_ms(0.5), Some(0.0));
        assert_eq!(h.mean_ms(), Some(1_000.0));
        assert_eq!(h.count(), 4);
    }

    #[test]
    fn memory_stays_bounded_for_absurd_durations() {
        let mut h = LogHistogram::default();
        h.record(i64::MAX);
        assert!(h.buckets.len() < 1_500, "{} buckets", h.buckets.len());
    }

    proptest! {
        #[test]
        fn quantiles_are_within_the_documented_error(
            values in proptest::collection::vec(0i64..40 * 86_400_000, 1..400),
            q in 0.01f64..=1.0,
        ) {
            let mut h = LogHistogram::default();
            for &v in &values {
                h.record(v);
            }
            let mut sorted = values.clone();
            sorted.sort_unstable();
            for q in [q, 0.5, 0.9] {
                let want = exact(&sorted, q);
                let got = h.quantile_ms(q).unwrap();
                // A hair over α allows for floating-point rounding at bucket edges.
                prop_assert!((got - want).abs() <= want * RELATIVE_ERROR * 1.000_001, "q={q} got {got} want {want}");
            }
        }

        #[test]
        fn adding_histograms_is_recording_both(
            a in proptest::collection::vec(0i64..10_000_000, 0..50),
            b in proptest::collection::vec(0i64..10_000_000, 0..50),
        ) {
            let (mut ha, mut hb, mut both) = (LogHistogram::default(), LogHistogram::default(), LogHistogram::default());
            a.iter().for_each(|&v| { ha.record(v); both.record(v); });
            b.iter().for_each(|&v| { hb.record(v); both.record(v); });
            ha.add(&hb);
            prop_assert_eq!(ha, both);
        }
    }
}
