//! What a tenant's profiles share in the detector: the tenant's settings, its pending timers,
//! counters and effort agreement, and the index of timers another profile's event can settle;
//! with the cool-down every intervention passes and the moments read off one profile's state
//! (channel hops, negative sentiment, high effort).

use omnistitch_model::{Channel, Event, EventTime, ProfileId, Tenant};

use crate::config::Settings;
use crate::effort::AgreementSums;
use crate::elsewhere::ElsewhereIndex;
use crate::intervention::{Evidence, Intervention, MomentType, Priority};
use crate::sentiment;
use crate::state::{live_timer, CaseKey, Mark, Profile, Timer, TimerKey, TimerReason, Timers, CASE_PREFIX};

const MINUTE_MS: i64 = 60_000;
pub(crate) const HOUR_MS: i64 = 60 * MINUTE_MS;

/// What happened to one moment type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MomentCount {
    /// Interventions emitted.
    pub detected: u64,
    /// Detections dropped by the cool-down.
    pub suppressed: u64,
    /// Detections dropped because their time to live had passed by the tenant's clock when
    /// they were made (an event far behind the watermark: a backfill of old history).
    pub stale: u64,
    /// Timers cancelled because their condition was met (absence moments only).
    pub cancelled: u64,
}

/// Counters of the detector; names and labels for telemetry: moment type and tenant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MomentCounters {
    /// Events observed.
    pub events: u64,
    /// Profiles forgotten after `state_retention_days` without events.
    pub profiles_evicted: u64,
    by_moment: [MomentCount; 7],
}

impl MomentCounters {
    /// The counts of `moment`.
    pub fn get(&self, moment: MomentType) -> MomentCount {
        moment.index().map_or_else(MomentCount::default, |i| self.by_moment[i])
    }

    pub(crate) fn slot(&mut self, moment: MomentType) -> Option<&mut MomentCount> {
        moment.index().map(|i| &mut self.by_moment[i])
    }

    /// Adds `other`'s counts (another tenant's, another shard's).
    pub fn add(&mut self, other: &MomentCounters) {
        self.events += other.events;
        self.profiles_evicted += other.profiles_evicted;
        for (mine, theirs) in self.by_moment.iter_mut().zip(&other.by_moment) {
            mine.detected += theirs.detected;
            mine.suppressed += theirs.suppressed;
            mine.stale += theirs.stale;
            mine.cancelled += theirs.cancelled;
        }
    }
}

/// An intervention before the cool-down and the profile are applied.
pub(crate) struct Draft {
    pub(crate) moment: MomentType,
    pub(crate) key: Mark,
    pub(crate) case: CaseKey,
    pub(crate) detected_at: EventTime,
    /// When it became actionable: its time to live runs from then. The detection time, except
    /// for a moment found only later (at a merge), which is actionable from when it is found.
    pub(crate) actionable_from: EventTime,
    /// Made by an event that arrived behind the watermark (or by a timer it armed): only such
    /// a moment can have expired when found (events in order are found at their own time,
    /// and what they make stays shuffle-invariant within the lateness).
    pub(crate) late: bool,
    pub(crate) priority: Priority,
    pub(crate) channel: Channel,
    pub(crate) reason: String,
    pub(crate) evidence: Vec<Mark>,
}

/// The case id a case key names (`case:<id>`); thread keys name none.
pub(crate) fn case_id_of(case: &CaseKey) -> Option<String> {
    case.name.text().strip_prefix(CASE_PREFIX).map(str::to_string)
}

/// "120 s", "30 min", "4 h", "7 d": the largest unit that divides the span evenly.
pub(crate) fn span(ms: i64) -> String {
    let ms = ms.max(0);
    for (unit, name) in [(24 * HOUR_MS, "d"), (HOUR_MS, "h"), (MINUTE_MS, "min")] {
        if ms >= unit && ms % unit == 0 {
            return format!("{} {name}", ms / unit);
        }
    }
    if ms % 1_000 == 0 {
        format!("{} s", ms / 1_000)
    } else {
        format!("{ms} ms")
    }
}

/// "1st", "2nd", "3rd", "11th"...
pub(crate) fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

impl TimerReason {
    /// The intervention's reason, written when the timer fires (most are cancelled first).
    pub(crate) fn text(&self) -> String {
        match *self {
            TimerReason::Unanswered { channel, kind, sla_ms } => format!(
                "no response to an inbound {channel} {} within the {} first-response SLA",
                kind.symbol(),
                span(sla_ms)
            ),
            TimerReason::Abandoned { call, window_ms } => format!(
                "abandoned {} not followed by an answered call, a response or a completed chat within {}",
                if call { "call" } else { "chat" },
                span(window_ms)
            ),
            TimerReason::Breached | TimerReason::Superseded { .. } => String::new(),
        }
    }
}

/// Minutes, rounded down, for reasons.
pub(crate) fn minutes(ms: i64) -> i64 {
    ms.max(0) / MINUTE_MS
}

/// The event a rule looks at, with where the detector placed it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seen<'a> {
    pub(crate) tenant: &'a Tenant,
    /// Its profile (after merges).
    pub(crate) profile: ProfileId,
    pub(crate) event: &'a Event,
    /// Its case.
    pub(crate) case: &'a CaseKey,
    /// The event as evidence.
    pub(crate) mark: &'a Mark,
    /// It arrived behind the watermark (the detector's clock is past it).
    pub(crate) late: bool,
}

/// What a tenant's profiles share.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Shared {
    /// Configuration, not state: not written to snapshots (set again when read back).
    #[serde(skip)]
    pub(crate) settings: Settings,
    pub(crate) timers: Timers,
    pub(crate) counters: MomentCounters,
    pub(crate) agreement: AgreementSums,
    /// Pending timers by something another profile's event can name: first-response waits by
    /// the digest of their case key and of the conversation keys (message, post) of the
    /// messages waiting, abandons by the customer's phone number. A reply naming the case or
    /// answering the message, or a successful contact with the number, settles them even when
    /// identity put it on another profile (replies to shared or team mailboxes, callbacks to
    /// landlines: they link no one).
    pub(crate) settled_elsewhere: ElsewhereIndex,
    /// Latest event time observed or watermark passed: the clock of eviction, and what an
    /// intervention must not have expired by.
    pub(crate) clock: Option<EventTime>,
}

impl Shared {
    pub(crate) fn new(settings: Settings) -> Self {
        Shared {
            settings,
            timers: Timers::new(),
            counters: MomentCounters::default(),
            agreement: AgreementSums::default(),
            settled_elsewhere: ElsewhereIndex::default(),
            clock: None,
        }
    }

    /// Applies the cool-down of `p` and builds the intervention.
    pub(crate) fn emit(
        &mut self,
        tenant: &Tenant,
        profile: ProfileId,
        p: Option<&mut Profile>,
        d: Draft,
    ) -> Option<Intervention> {
        let expires_at = d.actionable_from.plus_millis(self.settings.ttl_ms);
        // Expired before it is made (its event was far behind the tenant's clock): nothing left
        // to act on. Dropped before the cool-down, so it holds back no later detection.
        if d.late && self.clock.is_some_and(|now| expires_at <= now) {
            if let Some(c) = self.counters.slot(d.moment) {
                c.stale += 1;
            }
            return None;
        }
        let cooldown = self.settings.cooldown_ms;
        if let Some(p) = p {
            if cooldown > 0 {
                let key = (d.moment, d.case.digest);
                if let Some(&last) = p.cooldowns.get(&key) {
                    if d.detected_at.0.abs_diff(last.0) < cooldown.unsigned_abs() {
                        if let Some(c) = self.counters.slot(d.moment) {
                            c.suppressed += 1;
                        }
                        return None;
                    }
                }
                let slot = p.cooldowns.get_or_insert_with(&key, || (key, d.detected_at));
                *slot = (*slot).max(d.detected_at);
            }
        }
        if let Some(c) = self.counters.slot(d.moment) {
            c.detected += 1;
        }
        Some(Intervention {
            intervention_id: Intervention::derive_id(tenant.as_str(), d.moment, &d.key.event_id.text()),
            key_event_id: d.key.event_id.to_string(),
            tenant: tenant.to_string(),
            profile_id: profile.to_string(),
            moment_type: d.moment,
            priority: d.priority,
            detected_at: d.detected_at,
            reason: d.reason,
            case_id: case_id_of(&d.case),
            evidence: d
                .evidence
                .into_iter()
                .map(|m| Evidence { event_id: m.event_id.to_string(), channel: m.channel })
                .collect(),
            recommended_action: d.moment.action(),
            recommended_channel: d.channel,
            expires_at,
        })
    }

    pub(crate) fn schedule(&mut self, p: &mut Profile, key: TimerKey, timer: Timer) -> Option<TimerKey> {
        match self.timers.entry(key) {
            // The same event again (a redelivery): its timer is already set.
            std::collections::btree_map::Entry::Occupied(_) => None,
            std::collections::btree_map::Entry::Vacant(slot) => {
                let key = slot.key().clone();
                slot.insert(timer);
                p.timers.insert(key.clone());
                Some(key)
            }
        }
    }

    /// Lets events of other profiles naming `at` settle the pending timer `key`; entries of
    /// timers gone are dropped once the index outgrows the timers.
    pub(crate) fn index_elsewhere(&mut self, at: u64, key: TimerKey) {
        let timers = &self.timers;
        self.settled_elsewhere.insert(at, key, timers.len(), |k| live_timer(timers, k).is_some());
    }

    /// The live timer (or word of a breached wait) `key` stands for ([`live_timer`]).
    pub(crate) fn live(&self, key: &TimerKey) -> Option<TimerKey> {
        live_timer(&self.timers, key)
    }

    /// Removes pending timer `key` (or word of a breached wait) of `p`.
    pub(crate) fn cancel(&mut self, p: &mut Profile, key: &TimerKey) {
        p.timers.remove(key);
        if self.timers.remove(key).is_some_and(|t| t.reason.fires()) {
            if let Some(c) = self.counters.slot(key.moment) {
                c.cancelled += 1;
            }
        }
    }

    /// Cancels `p`'s abandon timers of abandons at or before `t` (a successful contact at `t`
    /// followed them).
    pub(crate) fn cancel_abandons_before(&mut self, p: &mut Profile, t: EventTime) {
        let abandons: Vec<TimerKey> = p
            .timers
            .iter()
            .filter(|k| k.moment == MomentType::AbandonedContact)
            .filter(|k| self.timers.get(*k).is_some_and(|timer| timer.key.time <= t))
            .cloned()
            .collect();
        for k in &abandons {
            self.cancel(p, k);
        }
    }

    /// A new conversation on another channel than the open case's last contact, within `window`.
    pub(crate) fn channel_hop(&mut self, seen: &Seen<'_>, p: &mut Profile, window: i64) -> Option<Intervention> {
        let Seen { tenant, profile: id, event, case: case_key, mark, late } = *seen;
        // The event's own case when it names one; otherwise the open case contacted last.
        let (case, previous) = if event.case_id.is_some() {
            let case = p.cases.get(&case_key.digest).filter(|c| c.is_open())?;
            (case_key.clone(), case.last_contact.clone()?)
        } else {
            // Ties go to the largest case key, as in key order.
            p.cases
                .values()
                .filter(|c| c.is_open())
                .filter_map(|c| c.last_contact.as_ref().map(|m| (c, m)))
                .max_by(|a, b| a.1.cmp(b.1).then_with(|| a.0.key.name.cmp(&b.0.key.name)))
                .map(|(c, m)| (c.key.clone(), m.clone()))?
        };
        let gap = mark.time.0.saturating_sub(previous.time.0);
        if previous.channel == event.channel || !(0..=window).contains(&gap) {
            return None;
        }
        let draft = Draft {
            moment: MomentType::ChannelHop,
            key: mark.clone(),
            reason: format!(
                "new {} conversation {} min after the open case's last contact on {}",
                event.channel,
                minutes(gap),
                previous.channel
            ),
            evidence: vec![previous, mark.clone()],
            case,
            detected_at: mark.time,
            actionable_from: mark.time,
            late,
            priority: Priority::High,
            channel: event.channel,
        };
        self.emit(tenant, id, Some(p), draft)
    }

    /// Inbound sentiment at or below `threshold` within `window` after a support contact.
    pub(crate) fn negative_sentiment(
        &mut self,
        seen: &Seen<'_>,
        p: &mut Profile,
        threshold: f64,
        window: i64,
    ) -> Option<Intervention> {
        let Seen { tenant, profile: id, event, case: case_key, mark, late } = *seen;
        let support = p.support.clone()?;
        let gap = mark.time.0.saturating_sub(support.time.0);
        if !(0..=window).contains(&gap) {
            return None;
        }
        let (score, source) = match event.sentiment.filter(|v| v.is_finite()) {
            Some(v) => (v.clamp(-1.0, 1.0), "producer score"),
            None => (sentiment::score(event.text.as_deref()?), "lexicon score of the text"),
        };
        if score > threshold {
            return None;
        }
        let draft = Draft {
            moment: MomentType::NegativeSentimentAfterContact,
            key: mark.clone(),
            case: case_key.clone(),
            detected_at: mark.time,
            actionable_from: mark.time,
            late,
            priority: if event.channel == Channel::Social { Priority::Critical } else { Priority::High },
            channel: event.channel,
            reason: format!(
                "inbound sentiment {score:.2} ({source}) {} min after a support contact on {}",
                minutes(gap),
                support.channel
            ),
            evidence: vec![support, mark.clone()],
        };
        self.emit(tenant, id, Some(p), draft)
    }

    /// The case's predicted effort crossing the threshold before any survey answer.
    pub(crate) fn high_effort(&mut self, seen: &Seen<'_>, p: &mut Profile) -> Option<Intervention> {
        let Seen { tenant, profile: id, event, case: case_key, mark, late } = *seen;
        let case = p.cases.get_mut(&case_key.digest)?;
        // The effort only changes with its inputs: a case whose inputs did not change since its
        // last check cannot have crossed the threshold.
        if case.surveyed || case.effort_fired || !std::mem::take(&mut case.effort_stale) {
            return None;
        }
        let channel = case.last_contact.as_ref().map_or(event.channel, |m| m.channel);
        let inputs = p.effort_inputs(case_key);
        let effort = inputs.predict(&self.settings.effort);
        if effort < self.settings.effort.threshold {
            return None;
        }
        if let Some(case) = p.cases.get_mut(&case_key.digest) {
            case.effort_fired = true;
        }
        let draft = Draft {
            moment: MomentType::HighEffortJourney,
            key: mark.clone(),
            case: case_key.clone(),
            detected_at: mark.time,
            actionable_from: mark.time,
            late,
            priority: Priority::Medium,
            channel,
            reason: format!(
                "predicted effort {effort:.1} of 7 before any survey answer: {} conversations, {} channel switches, \
                 {} min queue wait, {} transfers, {} abandoned contacts",
                inputs.conversations,
                inputs.channel_switches,
                minutes(inputs.queue_wait_ms),
                inputs.transfers,
                inputs.abandons
            ),
            evidence: vec![mark.clone()],
        };
        self.emit(tenant, id, Some(p), draft)
    }
}
