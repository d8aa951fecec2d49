//! Predicted effort of a case, and how well it agrees with what customers answer (CES).

use serde::{Deserialize, Serialize};

use crate::config::EffortWeights;

/// What a case's predicted effort is made of.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct EffortInputs {
    /// Conversations (by start) on another channel than the one before.
    pub(crate) channel_switches: u32,
    /// Conversations started by an inbound contact.
    pub(crate) conversations: u32,
    /// Queue wait over the case's calls, ms.
    pub(crate) queue_wait_ms: i64,
    /// Call transfers.
    pub(crate) transfers: i64,
    /// Abandoned calls and chats.
    pub(crate) abandons: u32,
}

impl EffortInputs {
    /// `1 + w·switches + w·(conversations − 1) + w·wait minutes + w·transfers + w·abandons`,
    /// clamped to the CES scale 1-7.
    pub(crate) fn predict(&self, w: &EffortWeights) -> f64 {
        let effort = 1.0
            + w.channel_switch * f64::from(self.channel_switches)
            + w.conversation * f64::from(self.conversations.saturating_sub(1))
            + w.queue_wait_minute * (self.queue_wait_ms.max(0) as f64 / 60_000.0)
            + w.transfer * self.transfers.max(0) as f64
            + w.abandon * f64::from(self.abandons);
        if effort.is_finite() {
            effort.clamp(1.0, 7.0)
        } else {
            7.0
        }
    }
}

/// Agreement between predicted effort and CES answers, over every answered case.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct EffortAgreement {
    /// CES answers compared.
    pub count: u64,
    /// Mean absolute difference between prediction and answer (CES points); none without answers.
    pub mean_absolute_error: Option<f64>,
    /// Pearson correlation of prediction and answer; none when either side does not vary.
    pub pearson_r: Option<f64>,
}

/// Running sums (Welford's co-moments, numerically stable) behind an [`EffortAgreement`].
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct AgreementSums {
    n: u64,
    abs_error: f64,
    mean_x: f64,
    mean_y: f64,
    m2_x: f64,
    m2_y: f64,
    c_xy: f64,
}

impl AgreementSums {
    /// Adds one (prediction, answer) pair.
    pub(crate) fn record(&mut self, predicted: f64, answered: f64) {
        self.n += 1;
        let n = self.n as f64;
        self.abs_error += (predicted - answered).abs();
        let dx = predicted - self.mean_x;
        self.mean_x += dx / n;
        let dy = answered - self.mean_y;
        self.mean_y += dy / n;
        self.m2_x += dx * (predicted - self.mean_x);
        self.m2_y += dy * (answered - self.mean_y);
        self.c_xy += dx * (answered - self.mean_y);
    }

    /// Adds another set of pairs (Chan et al.'s pairwise combination: exact, no pairs kept).
    pub(crate) fn absorb(&mut self, other: &AgreementSums) {
        if other.n == 0 {
            return;
        }
        if self.n == 0 {
            *self = *other;
            return;
        }
        let (na, nb) = (self.n as f64, other.n as f64);
        let n = na + nb;
        let dx = other.mean_x - self.mean_x;
        let dy = other.mean_y - self.mean_y;
        let w = na * nb / n;
        self.m2_x += other.m2_x + dx * dx * w;
        self.m2_y += other.m2_y + dy * dy * w;
        self.c_xy += other.c_xy + dx * dy * w;
        self.mean_x += dx * nb / n;
        self.mean_y += dy * nb / n;
        self.abs_error += other.abs_error;
        self.n += other.n;
    }

    /// The summary.
    pub(crate) fn agreement(&self) -> EffortAgreement {
        let n = self.n as f64;
        let denominator = (self.m2_x * self.m2_y).sqrt();
        let r = self.c_xy / denominator;
        EffortAgreement {
            count: self.n,
            mean_absolute_error: (self.n > 0).then(|| self.abs_error / n),
            // Spreads below rounding noise count as no spread.
            pearson_r: (self.n >= 2 && self.m2_x > 1e-12 && self.m2_y > 1e-12 && r.is_finite())
                .then(|| r.clamp(-1.0, 1.0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MomentsConfig;

    fn weights() -> EffortWeights {
        MomentsConfig::default().resolve().unwrap().default.effort
    }

    #[test]
    fn prediction_follows_the_formula_and_clamps() {
        let w = weights();
        assert_eq!(EffortInputs::default().predict(&w), 1.0);
        let one = EffortInputs { conversations: 1, ..EffortInputs::default() };
        assert_eq!(one.predict(&w), 1.0);
        let busy = EffortInputs {
            channel_switches: 2,
            conversations: 3,
            queue_wait_ms: 10 * 60_000,
            transfers: 1,
            abandons: 1,
        };
        // 1 + 2 + 1.5 + 0.5 + 0.5 + 1
        assert!((busy.predict(&w) - 6.5).abs() < 1e-9);
        let huge = EffortInputs { abandons: 100, ..EffortInputs::default() };
        assert_eq!(huge.predict(&w), 7.0);
        let odd = EffortInputs { queue_wait_ms: i64::MIN, transfers: -3, ..EffortInputs::default() };
        assert_eq!(odd.predict(&w), 1.0);
    }

    #[test]
    fn agreement_matches_the_textbook_formulas() {
        let mut s = AgreementSums::default();
        assert_eq!(s.agreement(), EffortAgreement { count: 0, mean_absolute_error: None, pearson_r: None });
        s.record(2.0, 3.0);
        assert_eq!(s.agreement().pearson_r, None);
        s.record(4.0, 5.0);
        s.record(6.0, 6.0);
        let a = s.agreement();
        assert_eq!(a.count, 3);
        assert!((a.mean_absolute_error.unwrap() - 2.0 / 3.0).abs() < 1e-12);
        // x = 2,4,6; y = 3,5,6: r = 6 / sqrt(8 · 4.6667) = 0.98198
        assert!((a.pearson_r.unwrap() - 0.981_980_506).abs() < 1e-6);
        // Two halves combined give the same summary as one pass.
        let (mut a, mut b) = (AgreementSums::default(), AgreementSums::default());
        a.record(2.0, 3.0);
        b.record(4.0, 5.0);
        b.record(6.0, 6.0);
        a.absorb(&b);
        let combined = a.agreement();
        assert_eq!(combined.count, 3);
        assert!((combined.pearson_r.unwrap() - s.agreement().pearson_r.unwrap()).abs() < 1e-12);
        assert!((combined.mean_absolute_error.unwrap() - 2.0 / 3.0).abs() < 1e-12);
        let mut flat = AgreementSums::default();
        flat.record(3.0, 1.0);
        flat.record(3.0, 7.0);
        assert_eq!(flat.agreement().pearson_r, None);
    }
}
