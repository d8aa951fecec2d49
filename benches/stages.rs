//! Criterion benches of the engine stages: normalization, identity resolution, timeline append,
//! the reorder buffer of a busy tenant, and snapshots of a pipeline's state.

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkGroup, Criterion, Throughput};
use omnistitch_identity::{IdentityConfig, IdentityResolver, IdentityRules, Normalizer};
use omnistitch_model::{
    Channel, Direction, Event, EventKind, EventTime, IdentifierKind, ProfileId, RawIdentifier, Tenant, ThreadRef,
};
use omnistitch_moments::{Merges, MomentsConfig, ReorderBuffer};
use omnistitch_timeline::{RetentionConfig, TimelineStore};

/// `n` chat events of `people` customers: email in three formats, a phone, a session, a cookie.
fn events(n: usize, people: usize) -> Vec<Event> {
    let tenant = Tenant::new("acme");
    (0..n)
        .map(|i| {
            let p = (i * 7919) % people;
            let email = match i % 3 {
                0 => format!("user{p}@mail.example"),
                1 => format!("User {p} <USER{p}@Mail.Example>"),
                _ => format!("  user{p}@mail.example "),
            };
            Event {
                identifiers: vec![
                    RawIdentifier::new(IdentifierKind::Email, email),
                    RawIdentifier::new(IdentifierKind::Phone, format!("(415) 55{}-{:04}", p / 10_000 % 10, p % 10_000)),
                    RawIdentifier::new(IdentifierKind::ChatSession, format!("S{}", i / 4)),
                    RawIdentifier::new(IdentifierKind::ChatVisitor, format!("v{p}")),
                ],
                thread: ThreadRef { key: Some(format!("chat:S{}", i / 4).into()), parent: None },
                ..Event::new(
                    tenant.clone(),
                    format!("e{i}"),
                    EventTime(1_767_571_200_000 + i as i64 * 1000),
                    Channel::Chat,
                    Direction::Inbound,
                    EventKind::Message,
                )
            }
        })
        .collect()
}

fn normalization(c: &mut Criterion) {
    let n = Normalizer::new("US").unwrap();
    let mut g = c.benchmark_group("normalize");
    g.throughput(Throughput::Elements(1));
    let email = RawIdentifier::new(IdentifierKind::Email, "Jo Smith <Jo.Smith@Example.COM>");
    g.bench_function("email", |b| b.iter(|| n.normalize(black_box(&email))));
    let phone = RawIdentifier::new(IdentifierKind::Phone, "(415) 555-0134");
    g.bench_function("phone_cached", |b| b.iter(|| n.normalize(black_box(&phone))));
    // Distinct numbers, more than the cache holds: every call parses and validates.
    let mut i = 0u64;
    g.bench_function("phone_first_sight", |b| {
        b.iter_batched(
            || {
                i += 1;
                let (exchange, line) = (200 + i / 10_000 % 700, i % 10_000);
                RawIdentifier::new(IdentifierKind::Phone, format!("+1 (212) {exchange:03}-{line:04}"))
            },
            |raw| n.normalize(&raw),
            BatchSize::SmallInput,
        )
    });
    let handle = RawIdentifier::new(IdentifierKind::SocialHandle, "Twitter:@JoSmith");
    g.bench_function("social_handle", |b| b.iter(|| n.normalize(black_box(&handle))));
    g.finish();
}

fn identity(c: &mut Criterion) {
    let evs = events(20_000, 5_000);
    let mut g = c.benchmark_group("identity");
    g.throughput(Throughput::Elements(evs.len() as u64));
    g.sample_size(20);
    g.bench_function("resolve_20k_events", |b| {
        b.iter_batched(
            // A fresh normalizer too: its phone cache would otherwise hold every number of
            // the stream after the first sample, and first sightings are part of resolving.
            || {
                let normalizer = Arc::new(Normalizer::new("US").unwrap());
                let rules = IdentityRules::from_config(&IdentityConfig::default(), &normalizer).unwrap();
                IdentityResolver::new(normalizer, rules)
            },
            |mut r| {
                for e in &evs {
                    black_box(r.resolve(e));
                }
                r
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn timeline(c: &mut Criterion) {
    let evs = events(20_000, 5_000);
    let profiles: Vec<ProfileId> = (0..5_000).map(|i| ProfileId::derive("acme", &i.to_string())).collect();
    let mut g = c.benchmark_group("timeline");
    g.throughput(Throughput::Elements(evs.len() as u64));
    g.sample_size(20);
    g.bench_function("append_20k_events", |b| {
        b.iter_batched(
            || TimelineStore::new(RetentionConfig::default()),
            |mut store| {
                for (i, e) in evs.iter().enumerate() {
                    black_box(store.append(profiles[(i * 7919) % profiles.len()], e));
                }
                store
            },
            BatchSize::LargeInput,
        )
    });
    // One profile past its count limit (a shared mailbox): every append evicts the oldest.
    let one = ProfileId::derive("acme", "mailbox");
    g.bench_function("append_20k_events_to_one_full_timeline", |b| {
        b.iter_batched(
            || TimelineStore::new(RetentionConfig { max_events_per_profile: 2_000, ..RetentionConfig::default() }),
            |mut store| {
                for e in &evs {
                    black_box(store.append(one, e));
                }
                store
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

/// A busy tenant: an event every 10 ms of event time, each joining two profiles, so the buffer
/// holds the 6,000 events (and merges) of the default minute of allowed lateness while it
/// releases one event per event pushed.
fn reorder(c: &mut Criterion) {
    let tenant = Tenant::new("acme");
    let n = 30_000usize;
    let evs: Vec<(ProfileId, Event, Merges)> = (0..n)
        .map(|i| {
            let survivor = ProfileId::derive("acme", &format!("s{i}"));
            let absorbed = ProfileId::derive("acme", &format!("a{i}"));
            let event = Event::new(
                tenant.clone(),
                format!("e{i}"),
                EventTime(1_767_571_200_000 + i as i64 * 10),
                Channel::Chat,
                Direction::Inbound,
                EventKind::Message,
            );
            (survivor, event, vec![(survivor, absorbed)])
        })
        .collect();
    let mut g = c.benchmark_group("reorder");
    g.throughput(Throughput::Elements(n as u64));
    g.sample_size(10);
    pushes(&mut g, "busy_tenant_30k_events_each_a_merge", &evs);
    // Two lanes of the same tenant, one 10 s behind the other: half the events arrive after
    // 500 they are released after.
    let mut skewed = Vec::with_capacity(n);
    let (ahead, behind): (Vec<_>, Vec<_>) = evs.iter().cloned().enumerate().partition(|(i, _)| i % 2 == 0);
    let mut behind = behind.into_iter().peekable();
    for (i, e) in ahead {
        skewed.push(e);
        while behind.peek().is_some_and(|(j, _)| *j + 1_000 <= i) {
            skewed.extend(behind.next().map(|(_, e)| e));
        }
    }
    skewed.extend(behind.map(|(_, e)| e));
    pushes(&mut g, "busy_tenant_30k_events_a_lane_10s_behind", &skewed);
    g.finish();
}

/// Benches pushing `arrivals` (profile, event, merges), in that order, through a fresh buffer.
fn pushes(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, arrivals: &[(ProfileId, Event, Merges)]) {
    let thread: Arc<str> = Arc::from("chat:s");
    g.bench_function(name, |b| {
        b.iter_batched(
            || (ReorderBuffer::new(&MomentsConfig::default()).expect("default settings"), arrivals.to_vec()),
            |(mut buffer, arrivals)| {
                let mut out = Vec::new();
                for (profile, event, merges) in arrivals {
                    buffer.push_into(profile, event, &thread, merges, &mut out);
                    out.clear();
                }
                buffer
            },
            BatchSize::LargeInput,
        )
    });
}

/// A pipeline's state written as a snapshot and read back: the state after a simulated world
/// of 5,000 customers (identity, timelines, moments, CX), in bytes per second.
fn snapshot(c: &mut Criterion) {
    use omnistitch_engine::{EngineConfig, Pipeline};
    let world =
        omnistitch_sim::generate(&omnistitch_sim::SimConfig { customers: 5_000, seed: 7, ..Default::default() })
            .expect("world");
    let config = EngineConfig::default();
    let mut pipeline = Pipeline::new(&config).expect("pipeline");
    let mut tenants = omnistitch_model::Tenants::default();
    for wire in world.events {
        if let Ok(event) = wire.into_event(|name| tenants.get(name)) {
            pipeline.apply(event);
        }
    }
    let bytes = pipeline.snapshot();
    let mut g = c.benchmark_group("snapshot");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.sample_size(10);
    g.bench_function("write_the_state_of_5k_customers", |b| b.iter(|| black_box(pipeline.snapshot())));
    g.bench_function("read_back_the_state_of_5k_customers", |b| {
        b.iter(|| black_box(Pipeline::from_snapshot(&bytes, &config).expect("reads back")))
    });
    g.finish();
}

criterion_group!(benches, normalization, identity, timeline, reorder, snapshot);
criterion_main!(benches);
