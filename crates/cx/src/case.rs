//! One case's state: what its metrics need, in a bounded number of bytes.
//!
//! A case is the `case:<id>` thread of a case id, or the thread of an event without one.
//! Conversations (chat session, call, email or social reply chain) are told apart by the event's
//! own conversation key and the key it replies to; they are stored as 64-bit hashes.

use omnistitch_model::{Channel, Direction, Event, EventKind, EventTime, Survey};
use smallvec::SmallVec;

use crate::report::{Aggregate, SurveyTally};

/// Conversation keys remembered per case; past it the oldest is forgotten, so a reply to a
/// forgotten message starts a new conversation (and counts as a new contact if inbound).
pub(crate) const MAX_KEYS_PER_CASE: usize = 64;
/// Conversation keys a case holds without a heap block: most cases have a few, and the case
/// is read for every event of its thread (a separate block was a second cache miss).
const INLINE_KEYS: usize = 4;
/// Responses kept from before a case's first inbound contact (the two earliest and the two
/// latest), for merging cases.
const MAX_EARLY_RESPONSES: usize = 4;

/// Index of a channel in per-channel arrays.
pub(crate) fn slot(channel: Channel) -> usize {
    match channel {
        Channel::Email => 0,
        Channel::Chat => 1,
        Channel::Phone => 2,
        Channel::Social => 3,
    }
}

/// Whether the event answers the customer ([`Event::answers_customer`]: automated messages
/// do not).
pub(crate) fn is_response(event: &Event) -> bool {
    event.answers_customer()
}

/// Whether the event is the customer reaching out (every contact kind, inbound).
pub(crate) fn is_inbound_contact(event: &Event) -> bool {
    event.direction == Direction::Inbound && event.kind.is_contact()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct KeyEntry {
    hash: u64,
    conversation: u32,
    /// The conversation already had an inbound contact.
    contacted: bool,
}

/// Whether a case is still held or was closed, for the counts of unresolved cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Standing {
    Live,
    Closed,
}

/// The state of one case.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Case {
    first_event: (EventTime, Channel),
    last_activity: EventTime,
    first_inbound: Option<(EventTime, Channel)>,
    /// The first response at or after `first_inbound`.
    first_response: Option<EventTime>,
    /// Responses before `first_inbound` (all of them while there is none), the two earliest and
    /// the two latest kept, ascending.
    #[serde(deserialize_with = "ascending")]
    early_responses: Vec<EventTime>,
    opened: Option<EventTime>,
    resolved: Option<EventTime>,
    contacts: [u32; 4],
    keys: SmallVec<[KeyEntry; INLINE_KEYS]>,
    next_conversation: u32,
    survey: SurveyTally,
    /// Event time after which the case is closed.
    pub(crate) deadline: i64,
    /// The deadline its deadline-index entry is filed under (never later than `deadline`).
    pub(crate) indexed: Option<i64>,
}

/// Times read back from a snapshot, refused unless ascending (searches rely on it).
fn ascending<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<EventTime>, D::Error> {
    let times = <Vec<EventTime> as serde::Deserialize>::deserialize(d)?;
    match times.windows(2).all(|w| w[0] <= w[1]) {
        true => Ok(times),
        false => Err(serde::de::Error::custom("response times out of order")),
    }
}

fn min_opt(a: Option<EventTime>, b: Option<EventTime>) -> Option<EventTime> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

impl Case {
    /// An empty case whose first event is `event`.
    pub(crate) fn new(event: &Event) -> Self {
        Case {
            first_event: (event.time, event.channel),
            last_activity: event.time,
            first_inbound: None,
            first_response: None,
            early_responses: Vec::new(),
            opened: None,
            resolved: None,
            contacts: [0; 4],
            keys: SmallVec::new(),
            next_conversation: 0,
            survey: SurveyTally::default(),
            deadline: i64::MIN,
            indexed: None,
        }
    }

    /// The latest event time of the case.
    pub(crate) fn last_activity(&self) -> EventTime {
        self.last_activity
    }

    /// Whether a CASE_RESOLVED was seen.
    pub(crate) fn is_resolved(&self) -> bool {
        self.resolved.is_some()
    }

    /// Hashes of the conversation keys the case holds.
    pub(crate) fn key_hashes(&self) -> impl Iterator<Item = u64> + '_ {
        self.keys.iter().map(|k| k.hash)
    }

    /// Whether the case holds the conversation key hashing to `hash`.
    pub(crate) fn holds(&self, hash: u64) -> bool {
        self.conversation_of(hash).is_some()
    }

    fn conversation_of(&self, hash: u64) -> Option<u32> {
        self.keys.iter().find(|k| k.hash == hash).map(|k| k.conversation)
    }

    fn contacted(&self, conversation: u32) -> bool {
        self.keys.iter().any(|k| k.conversation == conversation && k.contacted)
    }

    /// Forgets the oldest keys past the limit; returns their hashes.
    fn trim_keys(&mut self) -> Vec<u64> {
        let over = self.keys.len().saturating_sub(MAX_KEYS_PER_CASE);
        self.keys.drain(..over).map(|k| k.hash).collect()
    }

    /// Applies `event` whose own and replied-to conversation keys hash to `own` and `parent`;
    /// returns the hashes of keys forgotten to stay within [`MAX_KEYS_PER_CASE`].
    pub(crate) fn apply(&mut self, event: &Event, own: Option<u64>, parent: Option<u64>) -> Vec<u64> {
        let t = event.time;
        if t < self.first_event.0 {
            self.first_event = (t, event.channel);
        }
        self.last_activity = self.last_activity.max(t);

        let known = own.and_then(|h| self.conversation_of(h)).or_else(|| parent.and_then(|h| self.conversation_of(h)));
        let conversation = known.or_else(|| {
            (own.is_some() || parent.is_some()).then(|| {
                let c = self.next_conversation;
                self.next_conversation = c.wrapping_add(1);
                c
            })
        });
        if let Some(c) = conversation {
            let contacted = self.contacted(c);
            for h in [own, parent].into_iter().flatten() {
                if self.conversation_of(h).is_none() {
                    self.keys.push(KeyEntry { hash: h, conversation: c, contacted });
                }
            }
        }

        if is_inbound_contact(event) {
            // A conversation without keys is one event: always a new contact.
            let new_contact = conversation.is_none_or(|c| !self.contacted(c));
            if new_contact {
                // Saturating, as the sums below: a catch-all case id on every contact must not
                // wrap (or panic in a debug build) after 2^32 of them.
                let n = &mut self.contacts[slot(event.channel)];
                *n = n.saturating_add(1);
                if let Some(c) = conversation {
                    self.keys.iter_mut().filter(|k| k.conversation == c).for_each(|k| k.contacted = true);
                }
            }
            if self.first_inbound.is_none_or(|(t0, _)| t < t0) {
                self.first_inbound = Some((t, event.channel));
                self.settle_responses();
            }
        }
        if is_response(event) {
            self.add_response(t);
        }
        match event.kind {
            EventKind::CaseOpened => self.opened = min_opt(self.opened, Some(t)),
            EventKind::CaseResolved => self.resolved = min_opt(self.resolved, Some(t)),
            _ => {}
        }
        if let Some(s) = &event.survey {
            self.survey.record(s);
        }
        self.trim_keys()
    }

    fn add_response(&mut self, t: EventTime) {
        match self.first_inbound {
            Some((t0, _)) if t >= t0 => self.first_response = min_opt(self.first_response, Some(t)),
            _ => {
                let at = self.early_responses.partition_point(|&r| r <= t);
                self.early_responses.insert(at, t);
                // The earliest two and the latest two are kept: a thread that joins with an
                // earlier first contact is answered by the earliest after it, mostly the first.
                if self.early_responses.len() > MAX_EARLY_RESPONSES {
                    self.early_responses.remove(MAX_EARLY_RESPONSES / 2);
                }
            }
        }
    }

    /// After `first_inbound` moved earlier: early responses at or after it become candidates.
    fn settle_responses(&mut self) {
        let Some((t0, _)) = self.first_inbound else { return };
        let split = self.early_responses.partition_point(|&r| r < t0);
        if let Some(&r) = self.early_responses.get(split) {
            self.first_response = min_opt(self.first_response, Some(r));
        }
        self.early_responses.truncate(split);
    }

    /// Takes in `other` (a thread that turned out to belong to this case); returns the hashes
    /// of keys forgotten to stay within [`MAX_KEYS_PER_CASE`].
    pub(crate) fn merge(&mut self, other: Case) -> Vec<u64> {
        if other.first_event.0 < self.first_event.0 {
            self.first_event = other.first_event;
        }
        self.last_activity = self.last_activity.max(other.last_activity);
        self.opened = min_opt(self.opened, other.opened);
        self.resolved = min_opt(self.resolved, other.resolved);
        for (mine, theirs) in self.contacts.iter_mut().zip(other.contacts) {
            *mine = mine.saturating_add(theirs);
        }
        self.survey.add(&other.survey);

        let offset = self.next_conversation;
        // Conversation numbers are ids: after 2^32 of them in one case they wrap (as the
        // detector's), and only tell conversations apart less well.
        self.next_conversation = self.next_conversation.wrapping_add(other.next_conversation);
        self.keys.extend(
            other.keys.into_iter().map(|k| KeyEntry { conversation: k.conversation.wrapping_add(offset), ..k }),
        );

        // Every response either side kept, replayed against the merged first contact.
        let mut responses = std::mem::take(&mut self.early_responses);
        responses.extend(other.early_responses);
        responses.extend(self.first_response.take());
        responses.extend(other.first_response);
        if let Some((t, _)) = other.first_inbound {
            if self.first_inbound.is_none_or(|(t0, _)| t < t0) {
                self.first_inbound = other.first_inbound;
            }
        }
        responses.sort_unstable();
        for r in responses {
            self.add_response(r);
        }
        self.trim_keys()
    }

    /// Adds this case's contribution to per-channel aggregates (indexed by [`slot`]).
    ///
    /// Contacts go to their own channel; everything else to the case's channel: that of its
    /// first inbound contact, else that of its first event.
    pub(crate) fn contribute(&self, to: &mut [Aggregate; 4], standing: Standing) {
        for (agg, &n) in to.iter_mut().zip(&self.contacts) {
            agg.contacts += u64::from(n);
        }
        let home = self.first_inbound.map_or(self.first_event.1, |(_, c)| c);
        let agg = &mut to[slot(home)];
        let total: u32 = self.contacts.iter().fold(0, |a, &b| a.saturating_add(b));
        if total > 0 {
            agg.cases += 1;
            agg.repeat_cases += u64::from(total >= 2);
            agg.switched_cases += u64::from(self.contacts.iter().filter(|&&n| n > 0).count() >= 2);
        }
        if let (Some((t0, _)), Some(r)) = (self.first_inbound, self.first_response) {
            agg.first_response.record(r.millis() - t0.millis());
        }
        if let Some(start) = min_opt(self.opened, self.first_inbound.map(|(t, _)| t)) {
            match (self.resolved, standing) {
                (Some(end), _) => agg.resolution.record(end.millis() - start.millis()),
                (None, Standing::Live) => agg.open += 1,
                (None, Standing::Closed) => agg.expired += 1,
            }
        }
        agg.survey.add(&self.survey);
    }
}

impl SurveyTally {
    /// Counts the answers of one response; answers off their scale are ignored.
    pub(crate) fn record(&mut self, s: &Survey) {
        if let Some(c) = s.csat.filter(|c| (1..=5).contains(c)) {
            self.csat_answers += 1;
            self.csat_satisfied += u64::from(c >= 4);
        }
        if let Some(n) = s.nps.filter(|n| (0..=10).contains(n)) {
            self.nps_answers += 1;
            self.promoters += u64::from(n >= 9);
            self.detractors += u64::from(n <= 6);
        }
        if let Some(c) = s.ces.filter(|c| (1..=7).contains(c)) {
            self.ces_answers += 1;
            self.ces_sum += c as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use omnistitch_model::Tenant;

    /// Conversation numbers wrap after 2^32 (a case read back at the last one goes on).
    #[test]
    fn conversation_numbers_wrap() {
        let event = |id: &str, key: &str| {
            let mut e = Event::new(
                Tenant::new("acme"),
                id,
                EventTime(10),
                Channel::Chat,
                Direction::Inbound,
                EventKind::ChatStarted,
            );
            e.thread.key = Some(key.into());
            e
        };
        let mut case = Case::new(&event("e0", "chat:s0"));
        case.next_conversation = u32::MAX;
        case.apply(&event("e1", "chat:s1"), Some(1), None);
        case.apply(&event("e2", "chat:s2"), Some(2), None);
        assert_eq!(case.next_conversation, 1);
        assert_eq!(case.contacts.iter().sum::<u32>(), 2);
    }

    #[test]
    fn a_case_read_back_with_responses_out_of_order_is_refused() {
        let event = Event::new(
            Tenant::new("acme"),
            "e1",
            EventTime(10),
            Channel::Chat,
            Direction::Outbound,
            EventKind::Message,
        );
        let mut case = Case::new(&event);
        case.early_responses = vec![EventTime(10), EventTime(10), EventTime(20)];
        let read = |c: &Case| postcard::from_bytes::<Case>(&postcard::to_stdvec(c).unwrap());
        assert!(read(&case).is_ok_and(|back| back.early_responses.len() == 3));
        case.early_responses.swap(1, 2);
        assert!(read(&case).is_err());
    }
}
