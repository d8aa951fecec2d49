//! The metrics as numbers: per tenant, one row per channel and one for all channels.
//!
//! A statistic with nothing to average (no answers, no cases) is `None` and left out of the
//! JSON, never NaN. Definitions: `docs/metrics.md`.

use std::fmt;

use omnistitch_model::{Channel, Tenant};
use serde::{Serialize, Serializer};

use crate::histogram::LogHistogram;

/// Survey answers of a case or a row, as counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct SurveyTally {
    pub(crate) csat_answers: u64,
    pub(crate) csat_satisfied: u64,
    pub(crate) nps_answers: u64,
    pub(crate) promoters: u64,
    pub(crate) detractors: u64,
    pub(crate) ces_answers: u64,
    pub(crate) ces_sum: u64,
}

impl SurveyTally {
    pub(crate) fn add(&mut self, o: &SurveyTally) {
        self.csat_answers += o.csat_answers;
        self.csat_satisfied += o.csat_satisfied;
        self.nps_answers += o.nps_answers;
        self.promoters += o.promoters;
        self.detractors += o.detractors;
        self.ces_answers += o.ces_answers;
        self.ces_sum += o.ces_sum;
    }
}

/// Everything one (tenant, channel) row is computed from.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Aggregate {
    pub(crate) contacts: u64,
    pub(crate) cases: u64,
    pub(crate) repeat_cases: u64,
    pub(crate) switched_cases: u64,
    pub(crate) first_response: LogHistogram,
    pub(crate) resolution: LogHistogram,
    pub(crate) open: u64,
    pub(crate) expired: u64,
    pub(crate) survey: SurveyTally,
}

impl Aggregate {
    pub(crate) fn add(&mut self, o: &Aggregate) {
        self.contacts += o.contacts;
        self.cases += o.cases;
        self.repeat_cases += o.repeat_cases;
        self.switched_cases += o.switched_cases;
        self.first_response.add(&o.first_response);
        self.resolution.add(&o.resolution);
        self.open += o.open;
        self.expired += o.expired;
        self.survey.add(&o.survey);
    }

    pub(crate) fn row(&self, tenant: &Tenant, channel: Option<Channel>) -> CxRow {
        let s = &self.survey;
        CxRow {
            tenant: tenant.clone(),
            channel,
            contacts: self.contacts,
            cases: self.cases,
            first_response: Timing::of(&self.first_response),
            resolution: Resolution { timing: Timing::of(&self.resolution), open: self.open, expired: self.expired },
            csat: Share::of(s.csat_satisfied, s.csat_answers),
            nps: Nps {
                answers: s.nps_answers,
                promoters: s.promoters,
                detractors: s.detractors,
                score: ratio(s.promoters as f64 - s.detractors as f64, s.nps_answers).map(|x| 100.0 * x),
            },
            ces: Ces { answers: s.ces_answers, mean: ratio(s.ces_sum as f64, s.ces_answers) },
            repeat_contact: Share::of(self.repeat_cases, self.cases),
            channel_switch: Share::of(self.switched_cases, self.cases),
        }
    }
}

fn ratio(numerator: f64, denominator: u64) -> Option<f64> {
    (denominator > 0).then(|| numerator / denominator as f64)
}

/// Count, mean and percentiles of a duration, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Timing {
    /// Durations measured.
    pub count: u64,
    /// Exact mean, seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_seconds: Option<f64>,
    /// Median (nearest rank), seconds, within 1% relative error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50_seconds: Option<f64>,
    /// 90th percentile (nearest rank), seconds, within 1% relative error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p90_seconds: Option<f64>,
}

impl Timing {
    fn of(h: &LogHistogram) -> Self {
        let secs = |ms: Option<f64>| ms.map(|ms| ms / 1_000.0);
        Timing {
            count: h.count(),
            mean_seconds: secs(h.mean_ms()),
            p50_seconds: secs(h.quantile_ms(0.5)),
            p90_seconds: secs(h.quantile_ms(0.9)),
        }
    }
}

/// Resolution times, and the cases without one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Resolution {
    /// Times from start to resolution of resolved cases.
    #[serde(flatten)]
    pub timing: Timing,
    /// Started, unresolved cases still held.
    pub open: u64,
    /// Started cases closed without a resolution (idle past the limit or pushed out by the cap).
    pub expired: u64,
}

/// A share: `matching` of `total`, as a fraction from 0 to 1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Share {
    /// How many matched.
    pub matching: u64,
    /// How many there were.
    pub total: u64,
    /// `matching / total`; absent when `total` is 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub share: Option<f64>,
}

impl Share {
    fn of(matching: u64, total: u64) -> Self {
        Share { matching, total, share: ratio(matching as f64, total) }
    }
}

/// Net promoter score answers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Nps {
    /// Answers (0 to 10).
    pub answers: u64,
    /// Answers of 9 or 10.
    pub promoters: u64,
    /// Answers of 0 to 6.
    pub detractors: u64,
    /// % promoters minus % detractors, -100 to 100; absent without answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
}

/// Customer effort score answers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Ces {
    /// Answers (1 to 7).
    pub answers: u64,
    /// Mean answer; absent without answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean: Option<f64>,
}

/// The metrics of one tenant on one channel (or all channels).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CxRow {
    /// Tenant.
    pub tenant: Tenant,
    /// Channel; `None` (written `"all"`) for the all-channels row.
    #[serde(serialize_with = "channel_label")]
    pub channel: Option<Channel>,
    /// Inbound contacts made on this channel.
    pub contacts: u64,
    /// Cases with at least one inbound contact, attributed to this channel.
    pub cases: u64,
    /// First response time of cases attributed here.
    pub first_response: Timing,
    /// Resolution time of cases attributed here.
    pub resolution: Resolution,
    /// CSAT: answers of 4 or 5 among all CSAT answers.
    pub csat: Share,
    /// Net promoter score.
    pub nps: Nps,
    /// Customer effort score.
    pub ces: Ces,
    /// Cases with two or more inbound contacts among cases with any.
    pub repeat_contact: Share,
    /// Cases with inbound contacts on two or more channels among cases with any.
    pub channel_switch: Share,
}

fn channel_label<S: Serializer>(channel: &Option<Channel>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(channel.map_or("all", Channel::as_str))
}

/// Every tenant's rows: its four channels in schema order, then all channels.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CxReport {
    /// Rows, by tenant name, then channel.
    pub rows: Vec<CxRow>,
}

impl CxReport {
    /// The row of `tenant` on `channel` (`None`: all channels).
    pub fn row(&self, tenant: &str, channel: Option<Channel>) -> Option<&CxRow> {
        self.rows.iter().find(|r| r.tenant.as_str() == tenant && r.channel == channel)
    }
}

/// A duration for people: `42s`, `7.5m`, `3.2h`, `1.5d`.
fn human(seconds: Option<f64>) -> String {
    match seconds {
        None => "-".into(),
        Some(s) if s < 60.0 => format!("{s:.0}s"),
        Some(s) if s < 3_600.0 => format!("{:.1}m", s / 60.0),
        Some(s) if s < 86_400.0 => format!("{:.1}h", s / 3_600.0),
        Some(s) => format!("{:.1}d", s / 86_400.0),
    }
}

fn percent(share: &Share) -> String {
    share.share.map_or_else(|| "-".into(), |x| format!("{:.1}%", 100.0 * x))
}

fn with_count(value: Option<String>, count: u64) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{v} ({count})"))
}

const HEADER: [&str; 18] = [
    "tenant",
    "channel",
    "contacts",
    "cases",
    "frt_n",
    "frt_mean",
    "frt_p50",
    "frt_p90",
    "res_n",
    "res_mean",
    "res_p50",
    "res_p90",
    "open",
    "expired",
    "csat",
    "nps",
    "ces",
    "repeat/switch",
];

impl fmt::Display for CxReport {
    /// One aligned line per row; durations humanized, shares in percent, survey counts in brackets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut lines: Vec<Vec<String>> = vec![HEADER.iter().map(|h| h.to_string()).collect()];
        for r in &self.rows {
            let (frt, res) = (&r.first_response, &r.resolution.timing);
            lines.push(vec![
                // The table goes to logs: a name that does not look like a brand's is withheld.
                if Tenant::is_name_like(r.tenant.as_str()) { r.tenant.to_string() } else { "(withheld)".to_string() },
                r.channel.map_or("all", Channel::as_str).to_string(),
                r.contacts.to_string(),
                r.cases.to_string(),
                frt.count.to_string(),
                human(frt.mean_seconds),
                human(frt.p50_seconds),
                human(frt.p90_seconds),
                res.count.to_string(),
                human(res.mean_seconds),
                human(res.p50_seconds),
                human(res.p90_seconds),
                r.resolution.open.to_string(),
                r.resolution.expired.to_string(),
                with_count(r.csat.share.map(|x| format!("{:.1}%", 100.0 * x)), r.csat.total),
                with_count(r.nps.score.map(|x| format!("{x:+.1}")), r.nps.answers),
                with_count(r.ces.mean.map(|x| format!("{x:.2}")), r.ces.answers),
                format!("{}/{}", percent(&r.repeat_contact), percent(&r.channel_switch)),
            ]);
        }
        let widths: Vec<usize> =
            (0..HEADER.len()).map(|i| lines.iter().map(|l| l[i].chars().count()).max().unwrap_or(0)).collect();
        for line in &lines {
            let mut out = String::new();
            for (i, (cell, w)) in line.iter().zip(&widths).enumerate() {
                if i > 0 {
                    out.push_str("  ");
                }
                // Names read left-aligned, numbers right-aligned.
                if i < 2 {
                    out.push_str(&format!("{cell:<w$}"));
                } else {
                    out.push_str(&format!("{cell:>w$}"));
                }
            }
            writeln!(f, "{}", out.trim_end())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(human(None), "-");
        assert_eq!(human(Some(42.0)), "42s");
        assert_eq!(human(Some(450.0)), "7.5m");
        assert_eq!(human(Some(3.2 * 3_600.0)), "3.2h");
        assert_eq!(human(Some(1.5 * 86_400.0)), "1.5d");
    }

    #[test]
    fn empty_row_has_no_nan_and_omits_undefined_statistics() {
        let row = Aggregate::default().row(&Tenant::new("acme"), None);
        assert_eq!(row.csat.share, None);
        assert_eq!(row.nps.score, None);
        assert_eq!(row.ces.mean, None);
        assert_eq!(row.first_response.p50_seconds, None);
        let json = serde_json::to_string(&row).unwrap();
        assert!(!json.contains("NaN") && !json.contains("null"), "{json}");
        assert!(json.contains(r#""channel":"all""#), "{json}");
        assert!(!json.contains("share") && !json.contains("mean"), "{json}");
    }
}
