//! The timeline store: one ordered, deduplicated timeline per profile.

use hashbrown::HashMap;
use std::collections::VecDeque;
use std::sync::Arc;

use omnistitch_model::{Channel, Direction, Event, EventKind, EventTime, ProfileId};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::threads::{ThreadHandle, ThreadIndex};

mod snapshot;

/// Retention settings as written in configuration (`[timeline]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Most events kept per profile; the oldest go first.
    pub max_events_per_profile: usize,
    /// Events older than this many days behind their tenant's newest event time are evicted.
    pub max_age_days: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig { max_events_per_profile: 2_000, max_age_days: 180 }
    }
}

/// A retention setting that cannot work.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("timeline.{0}: must be at least 1")]
pub struct RetentionError(pub &'static str);

impl RetentionConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), RetentionError> {
        if self.max_events_per_profile == 0 {
            return Err(RetentionError("max_events_per_profile"));
        }
        if self.max_age_days == 0 {
            return Err(RetentionError("max_age_days"));
        }
        Ok(())
    }

    /// `max_age_days` in milliseconds.
    pub fn max_age_ms(&self) -> i64 {
        i64::from(self.max_age_days) * 86_400_000
    }
}

/// An event on a timeline: its place (time, id), what it was and its thread; not the whole
/// record (the full record goes out as a timeline output when the event is applied, and the
/// ordered stages get the event itself). 40 bytes and one small string per event.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineEntry {
    /// Event time.
    pub time: EventTime,
    /// Event id.
    pub event_id: Box<str>,
    /// Conversation thread (followed through re-threading).
    pub thread: ThreadHandle,
    /// Channel.
    pub channel: Channel,
    /// Direction.
    pub direction: Direction,
    /// Kind.
    pub kind: EventKind,
}

impl TimelineEntry {
    /// The id of the thread the entry's conversation is in now.
    pub fn thread_id(&self) -> &Arc<str> {
        self.thread.id()
    }

    fn key(&self) -> (EventTime, &str) {
        (self.time, &self.event_id)
    }
}

/// One profile's events, ordered by (event time, event id).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timeline {
    /// A ring: a full timeline drops its oldest entry for each new one without moving the
    /// others.
    entries: VecDeque<TimelineEntry>,
}

impl Timeline {
    /// The entries, oldest first.
    pub fn entries(&self) -> &VecDeque<TimelineEntry> {
        &self.entries
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Inserts in order; `None` if an entry with the same event id is already at that time.
    fn insert(&mut self, entry: TimelineEntry) -> Option<usize> {
        // Events mostly arrive in order: after the last entry, no search (whose probes would
        // each read a cold part of the timeline).
        if self.entries.back().is_none_or(|last| last.key() < entry.key()) {
            self.entries.push_back(entry);
            return Some(self.entries.len() - 1);
        }
        let pos = self.entries.partition_point(|e| e.key() < entry.key());
        if self.entries.get(pos).is_some_and(|e| e.event_id == entry.event_id) {
            return None;
        }
        self.entries.insert(pos, entry);
        Some(pos)
    }

    /// Drops entries before `cutoff` and beyond `max` (oldest first); returns how many.
    fn evict(&mut self, cutoff: EventTime, max: usize) -> usize {
        // Nothing too old unless the oldest entry is: checked first, without a search.
        let old = match self.entries.front() {
            Some(first) if first.time < cutoff => self.entries.partition_point(|e| e.time < cutoff),
            _ => 0,
        };
        let over = self.entries.len().saturating_sub(old).saturating_sub(max);
        let n = old + over;
        self.entries.drain(..n);
        n
    }
}

/// What an append did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// Index of the event in its timeline, `None` if it was already there, older than
    /// retention, or evicted at once (older than every entry of a full timeline).
    pub position: Option<usize>,
    /// Entries evicted by retention.
    pub evicted: usize,
    /// The event's thread.
    pub thread_id: Arc<str>,
    /// The thread the event's case id absorbed, if it re-threaded a conversation.
    pub absorbed_thread: Option<Arc<str>>,
}

/// A tenant's timelines, thread index and clock: retention follows each tenant's own newest
/// event time, so a tenant whose history is being loaded keeps it beside one that is live, and
/// sweeping one tenant visits its timelines alone.
#[derive(Debug, Default)]
struct TenantTimelines {
    timelines: HashMap<ProfileId, Timeline>,
    threads: ThreadIndex,
    /// Newest event time of the tenant.
    watermark: EventTime,
}

impl TenantTimelines {
    /// The oldest event time retention keeps (entries up to `max_age_ms` behind the newest).
    fn cutoff(&self, max_age_ms: i64) -> EventTime {
        EventTime(self.watermark.0.saturating_sub(max_age_ms))
    }
}

/// Every profile's timeline, with the thread indexes and retention.
#[derive(Debug, Default)]
pub struct TimelineStore {
    retention: RetentionConfig,
    /// Tenant name -> index into `by_tenant`.
    tenants: HashMap<Arc<str>, u32>,
    by_tenant: Vec<TenantTimelines>,
    evicted_total: u64,
    /// Entries held, over every timeline (kept as they come and go: summing them walked every
    /// profile).
    entries: usize,
}

impl TimelineStore {
    /// An empty store with `retention` (validated by the caller).
    pub fn new(retention: RetentionConfig) -> Self {
        TimelineStore { retention, ..Default::default() }
    }

    /// Appends `event` (resolved to `profile`) in event-time order.
    pub fn append(&mut self, profile: ProfileId, event: &Event) -> Appended {
        let tenant = match self.tenants.get(event.tenant.as_str()) {
            Some(&t) => t,
            None => {
                let t = u32::try_from(self.by_tenant.len()).expect("fewer than 2^32 tenants");
                self.by_tenant.push(TenantTimelines { watermark: EventTime(i64::MIN), ..Default::default() });
                self.tenants.insert(event.tenant.0.clone(), t);
                t
            }
        };
        let max = self.retention.max_events_per_profile;
        let max_age = self.retention.max_age_ms();
        let of = &mut self.by_tenant[tenant as usize];
        of.watermark = of.watermark.max(event.time);
        let threaded = of.threads.assign(event);
        let entry = TimelineEntry {
            time: event.time,
            event_id: event.event_id.as_str().into(),
            channel: event.channel,
            direction: event.direction,
            kind: event.kind,
            thread: threaded.handle,
        };
        let cutoff = of.cutoff(max_age);
        let timeline = of.timelines.entry(profile).or_default();
        let position = if entry.time < cutoff { None } else { timeline.insert(entry) };
        let evicted = timeline.evict(cutoff, max);
        self.evicted_total += evicted as u64;
        self.entries = self.entries + usize::from(position.is_some()) - evicted;
        let position = position.and_then(|p| p.checked_sub(evicted));
        Appended { position, evicted, thread_id: threaded.thread, absorbed_thread: threaded.absorbed }
    }

    /// Moves `absorbed`'s timeline into `survivor`'s (both of `tenant`), keeping order and
    /// dropping duplicates; returns how many entries the merged timeline's retention evicted.
    pub fn merge(&mut self, tenant: &str, survivor: ProfileId, absorbed: ProfileId) -> usize {
        let Some(&t) = self.tenants.get(tenant) else { return 0 };
        let max = self.retention.max_events_per_profile;
        let of = &mut self.by_tenant[t as usize];
        let cutoff = of.cutoff(self.retention.max_age_ms());
        let Some(from) = of.timelines.remove(&absorbed) else { return 0 };
        let into = of.timelines.entry(survivor).or_default();
        let before = into.entries.len() + from.entries.len();
        let mut merged = Vec::with_capacity(into.entries.len() + from.entries.len());
        let (mut a, mut b) =
            (std::mem::take(&mut into.entries).into_iter().peekable(), from.entries.into_iter().peekable());
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) if x.key() <= y.key() => a.next(),
                (Some(_), Some(_)) | (None, Some(_)) => b.next(),
                (Some(_), None) => a.next(),
                (None, None) => break,
            };
            let next = next.expect("peeked");
            if merged.last().is_none_or(|l: &TimelineEntry| l.key() != next.key()) {
                merged.push(next);
            }
        }
        into.entries = merged.into();
        let evicted = into.evict(cutoff, max);
        self.evicted_total += evicted as u64;
        self.entries -= before - into.entries.len();
        evicted
    }

    /// Evicts, across all profiles and thread indexes, what retention no longer allows (each
    /// tenant by its own clock).
    pub fn evict_expired(&mut self) -> usize {
        self.evict_where(|_| true)
    }

    /// [`TimelineStore::evict_expired`] for the profiles and thread index of `tenant` alone.
    pub fn evict_expired_of(&mut self, tenant: &str) -> usize {
        match self.tenants.get(tenant) {
            Some(&t) => self.evict_where(|i| i == t),
            None => 0,
        }
    }

    fn evict_where(&mut self, tenant: impl Fn(u32) -> bool) -> usize {
        let max = self.retention.max_events_per_profile;
        let max_age = self.retention.max_age_ms();
        let mut n = 0;
        for (i, of) in self.by_tenant.iter_mut().enumerate() {
            if !tenant(i as u32) {
                continue;
            }
            let cutoff = of.cutoff(max_age);
            of.timelines.retain(|_, t| {
                n += t.evict(cutoff, max);
                !t.is_empty()
            });
            of.threads.evict_before(cutoff);
        }
        self.evicted_total += n as u64;
        self.entries -= n;
        n
    }

    /// The timeline of `tenant`'s `profile`.
    pub fn timeline(&self, tenant: &str, profile: ProfileId) -> Option<&Timeline> {
        let &t = self.tenants.get(tenant)?;
        self.by_tenant[t as usize].timelines.get(&profile)
    }

    /// Every timeline.
    pub fn timelines(&self) -> impl Iterator<Item = (&ProfileId, &Timeline)> {
        self.by_tenant.iter().flat_map(|of| of.timelines.iter())
    }

    /// Entries held over every timeline (constant time).
    pub fn entry_count(&self) -> usize {
        self.entries
    }

    /// Entries evicted by retention since the store was created.
    pub fn evicted_total(&self) -> u64 {
        self.evicted_total
    }

    /// Newest event time seen of `tenant`.
    pub fn watermark(&self, tenant: &str) -> Option<EventTime> {
        self.tenants.get(tenant).map(|&t| self.by_tenant[t as usize].watermark)
    }
}
