//! A pipeline read back from a snapshot goes on as the original would have: the same outputs
//! for every event and clock move after it, and the same state at the end.

use proptest::prelude::*;

use omnistitch_model::{EventTime, Tenant};

use crate::order_tests::{traffic, T0};
use crate::{EngineConfig, Pipeline};

/// What the pipeline is handed.
#[derive(Debug, Clone)]
enum Op {
    Apply(Box<omnistitch_model::Event>),
    /// A quiet tenant's clock moved on.
    Advance(Tenant, EventTime),
}

/// Generated traffic of two tenants, arriving up to two minutes out of order (past the
/// 60-second lateness: some arrive late), with redeliveries and clock moves in between; in
/// half the cases, event times are whole half-minutes (many events at one time: the buffer
/// orders them by arrival).
fn ops() -> impl Strategy<Value = Vec<Op>> {
    let shape = prop::collection::vec((0i64..120_000, any::<bool>(), 0u8..16), 50);
    (traffic(), shape, any::<bool>()).prop_map(|(mut events, shape, coarse)| {
        if coarse {
            for e in &mut events {
                e.time = EventTime(e.time.0 - (e.time.0 - T0) % 30_000);
            }
        }
        let mut arrival: Vec<(i64, usize)> =
            events.iter().enumerate().map(|(i, e)| (e.time.0 + shape[i % shape.len()].0, i)).collect();
        arrival.sort();
        let mut ops = Vec::new();
        for (n, &(at, i)) in arrival.iter().enumerate() {
            let (_, globex, extra) = shape[n % shape.len()];
            let mut e = events[i].clone();
            if globex {
                e.tenant = Tenant::new("globex");
            }
            ops.push(Op::Apply(Box::new(e.clone())));
            match extra {
                0 => ops.push(Op::Apply(Box::new(e))),
                1 => ops.push(Op::Advance(e.tenant.clone(), EventTime(at + 600_000))),
                _ => {}
            }
        }
        ops
    })
}

/// Hands `op` to `p`; what came out, as text.
fn step(p: &mut Pipeline, op: &Op) -> String {
    match op {
        Op::Apply(e) => format!("{:?}", p.apply((**e).clone())),
        Op::Advance(t, at) => format!("{:?}", p.advance_clock(t, *at)),
    }
}

/// Everything the pipeline holds that can be read, in a canonical order, after a flush.
fn end_state(mut p: Pipeline) -> Vec<String> {
    let flushed = format!("{:?}", p.flush());
    let engine = p.engine();
    let mut out = vec![flushed, format!("{:?}", engine.stats())];
    let mut graphs: Vec<_> = engine.identity().graphs().collect();
    graphs.sort_by(|a, b| a.0.cmp(b.0));
    for (tenant, g) in graphs {
        let mut profiles: Vec<String> = g
            .profiles()
            .map(|pr| {
                let mut ids = g.identifiers(pr);
                ids.sort();
                format!("{tenant:?} {pr:?} {ids:?}")
            })
            .collect();
        profiles.sort();
        out.extend(profiles);
        assert_eq!(g.memory_bytes(), g.memory_bytes_walked(), "kept counts rebuilt");
        out.push(format!("{} {} {}", g.identifier_count(), g.forgotten_count(), g.shared_count()));
    }
    let mut timelines: Vec<String> = engine.timelines().timelines().map(|(id, t)| format!("{id:?} {t:?}")).collect();
    timelines.sort();
    out.extend(timelines);
    out.push(format!("{} {}", engine.timelines().entry_count(), engine.timelines().evicted_total()));
    out.push(format!("{:?}", p.cx_report()));
    let d = p.detector().expect("ordered stages");
    out.push(format!("{:?} {:?} {} {}", d.counters(), d.effort_agreement(), d.held_profiles(), d.pending_timers()));
    out.push(format!("{:?} {}", p.clocks(), p.late_events()));
    out
}

/// Runs `ops`, read back from a snapshot before each op whose index is in `cuts`.
fn run(ops: &[Op], cuts: &[usize]) -> (Vec<String>, Vec<String>) {
    let config = EngineConfig::default();
    let mut p = Pipeline::new(&config).unwrap();
    let mut outputs = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        if cuts.contains(&i) {
            p = Pipeline::from_snapshot(&p.snapshot(), &config).unwrap();
        }
        outputs.push(step(&mut p, op));
    }
    if cuts.contains(&ops.len()) {
        p = Pipeline::from_snapshot(&p.snapshot(), &config).unwrap();
    }
    (outputs, end_state(p))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Read back every few ops (every op, every other one, ...), the pipeline gives every
    /// output and ends in every state the uninterrupted one does.
    #[test]
    fn a_pipeline_read_back_from_a_snapshot_goes_on_as_the_original(
        ops in ops(),
        every in 1usize..8,
        offset in 0usize..8,
    ) {
        let cuts: Vec<usize> = (0..=ops.len()).filter(|i| i % every == offset % every).collect();
        let (outputs, end) = run(&ops, &[]);
        let (read_back, read_back_end) = run(&ops, &cuts);
        for (i, (a, b)) in outputs.iter().zip(&read_back).enumerate() {
            prop_assert_eq!(a, b, "op {} ({:?}), cuts {:?}", i, ops[i], cuts);
        }
        prop_assert_eq!(end, read_back_end);
    }
}

#[test]
fn snapshots_of_other_stages_formats_and_garbage_are_refused() {
    use crate::snapshot::SnapshotError;
    let config = EngineConfig::default();
    let mut p = Pipeline::new(&config).unwrap();
    let mut e = omnistitch_model::Event::new(
        Tenant::new("acme"),
        "e1",
        EventTime(T0),
        omnistitch_model::Channel::Chat,
        omnistitch_model::Direction::Inbound,
        omnistitch_model::EventKind::Message,
    );
    e.identifiers.push(omnistitch_model::RawIdentifier::new(omnistitch_model::IdentifierKind::Email, "jo@mailbox.io"));
    p.apply(e);
    let whole = p.snapshot();
    let (engine, ordered) = p.into_parts();
    let ordered = ordered.unwrap();
    assert!(matches!(
        crate::Ordered::from_snapshot(&engine.snapshot(), &config),
        Err(SnapshotError::Stage { found: 1, expected: 2 })
    ));
    assert!(crate::Ordered::from_snapshot(&ordered.snapshot(), &config).is_ok());
    let mut newer = whole.clone();
    newer[5] += 1;
    assert!(matches!(Pipeline::from_snapshot(&newer, &config), Err(SnapshotError::Format { found: 2 })));
    assert!(matches!(Pipeline::from_snapshot(b"{}", &config), Err(SnapshotError::NotASnapshot)));
    for cut in [whole.len() - 1, whole.len() / 2, 8] {
        assert!(matches!(Pipeline::from_snapshot(&whole[..cut], &config), Err(SnapshotError::Body(_))), "{cut}");
    }
    let mut longer = whole.clone();
    longer.push(0);
    assert!(matches!(Pipeline::from_snapshot(&longer, &config), Err(SnapshotError::Body(_))));
    assert!(Pipeline::from_snapshot(&whole, &config).is_ok());
}
