//! The store in a snapshot: timelines and thread keys per tenant, over one table of threads
//! (entries and keys share threads, and a later re-threading must reach all of them).

use std::collections::VecDeque;
use std::sync::Arc;

use hashbrown::HashMap;
use omnistitch_model::{Channel, Direction, EventKind, EventTime, ProfileId};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{RetentionConfig, TenantTimelines, Timeline, TimelineEntry, TimelineStore};
use crate::threads::{ThreadIndex, ThreadNumbers, ThreadTable};

/// An entry, its thread by number.
#[derive(Serialize, Deserialize)]
struct EntryState<S> {
    time: EventTime,
    event_id: S,
    thread: u32,
    channel: Channel,
    direction: Direction,
    kind: EventKind,
}

/// A tenant's timelines and thread keys.
#[derive(Serialize, Deserialize)]
struct TenantState<S> {
    name: Arc<str>,
    watermark: EventTime,
    timelines: Vec<(ProfileId, Vec<EntryState<S>>)>,
    keys: Vec<(u64, u32, EventTime)>,
}

/// The store: threads first (numbered while the tenants were gathered), tenants in their order.
#[derive(Serialize, Deserialize)]
struct StoreState<S> {
    threads: Vec<(Arc<str>, Option<u32>)>,
    tenants: Vec<TenantState<S>>,
    evicted_total: u64,
}

/// Written without its retention settings (configuration, not state).
impl Serialize for TimelineStore {
    fn serialize<Se: Serializer>(&self, s: Se) -> Result<Se::Ok, Se::Error> {
        let mut names: Vec<(&Arc<str>, u32)> = self.tenants.iter().map(|(n, &i)| (n, i)).collect();
        names.sort_unstable_by_key(|&(_, i)| i);
        let mut numbers = ThreadNumbers::default();
        let tenants = names
            .into_iter()
            .map(|(name, i)| {
                let of = &self.by_tenant[i as usize];
                let timelines = of
                    .timelines
                    .iter()
                    .map(|(&id, t)| {
                        let entries = t
                            .entries
                            .iter()
                            .map(|e| EntryState {
                                time: e.time,
                                event_id: &*e.event_id,
                                thread: numbers.handle(&e.thread),
                                channel: e.channel,
                                direction: e.direction,
                                kind: e.kind,
                            })
                            .collect();
                        (id, entries)
                    })
                    .collect();
                let keys = of.threads.numbered_keys(&mut numbers);
                TenantState { name: name.clone(), watermark: of.watermark, timelines, keys }
            })
            .collect();
        StoreState { threads: numbers.table, tenants, evicted_total: self.evicted_total }.serialize(s)
    }
}

/// Read back with default retention settings: [`TimelineStore::with_retention`] sets the
/// configured ones.
impl<'de> Deserialize<'de> for TimelineStore {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let state = StoreState::<Box<str>>::deserialize(d)?;
        let table = ThreadTable::new(state.threads).map_err(D::Error::custom)?;
        let mut store = TimelineStore { evicted_total: state.evicted_total, ..TimelineStore::default() };
        for tenant in state.tenants {
            let mut timelines = HashMap::with_capacity(tenant.timelines.len());
            for (id, entries) in tenant.timelines {
                let mut ring = VecDeque::with_capacity(entries.len());
                for e in entries {
                    let thread = table.handle(e.thread).map_err(D::Error::custom)?;
                    let entry = TimelineEntry {
                        time: e.time,
                        event_id: e.event_id,
                        thread,
                        channel: e.channel,
                        direction: e.direction,
                        kind: e.kind,
                    };
                    if ring.back().is_some_and(|last: &TimelineEntry| last.key() >= entry.key()) {
                        return Err(D::Error::custom("timeline entries out of order"));
                    }
                    ring.push_back(entry);
                }
                store.entries += ring.len();
                if timelines.insert(id, Timeline { entries: ring }).is_some() {
                    return Err(D::Error::custom("a profile's timeline twice"));
                }
            }
            let threads = ThreadIndex::from_numbered(tenant.keys, &table).map_err(D::Error::custom)?;
            let i = u32::try_from(store.by_tenant.len()).map_err(D::Error::custom)?;
            if store.tenants.insert(tenant.name, i).is_some() {
                return Err(D::Error::custom("a tenant twice"));
            }
            store.by_tenant.push(TenantTimelines { timelines, threads, watermark: tenant.watermark });
        }
        Ok(store)
    }
}

impl TimelineStore {
    /// The store with `retention` in force (for one read back from a snapshot).
    pub fn with_retention(self, retention: RetentionConfig) -> Self {
        TimelineStore { retention, ..self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(time: i64, id: &str) -> EntryState<&str> {
        EntryState {
            time: EventTime(time),
            event_id: id,
            thread: 0,
            channel: Channel::Chat,
            direction: Direction::Inbound,
            kind: EventKind::Message,
        }
    }

    fn read(timelines: Vec<(ProfileId, Vec<EntryState<&str>>)>) -> Result<TimelineStore, postcard::Error> {
        let tenant = TenantState { name: Arc::from("acme"), watermark: EventTime(10), timelines, keys: vec![] };
        let state = StoreState { threads: vec![(Arc::from("t"), None)], tenants: vec![tenant], evicted_total: 0 };
        postcard::from_bytes(&postcard::to_stdvec(&state).unwrap())
    }

    #[test]
    fn a_store_read_back_refuses_a_timeline_twice_or_out_of_order() {
        let (p, q) = (ProfileId::derive("acme", "a"), ProfileId::derive("acme", "c"));
        let store = read(vec![(p, vec![entry(1, "a"), entry(2, "b")]), (q, vec![entry(1, "c")])]).unwrap();
        assert_eq!(store.entry_count(), 3);
        let twice = read(vec![(p, vec![entry(1, "a")]), (p, vec![entry(2, "b")])]);
        assert!(twice.is_err(), "a profile's timeline twice");
        assert!(read(vec![(p, vec![entry(2, "b"), entry(1, "a")])]).is_err());
    }
}
