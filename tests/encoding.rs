//! The hand-written output encoders write exactly what apache-avro writes for the same records,
//! over every timeline entry, profile state, merge and intervention of a simulated world.

use omnistitch_codec::datum::OutputKind;
use omnistitch_codec::{FastEncoder, OutputEncoder};
use omnistitch_engine::records::{merge_records, profile_record, timeline_record};
use omnistitch_engine::{EngineConfig, Pipeline};
use omnistitch_model::Tenants;
use omnistitch_moments::Intervention;
use omnistitch_sim::{generate, SimConfig};

#[test]
fn fast_encoders_match_apache_avro_byte_for_byte() {
    let world = generate(&SimConfig { customers: 400, seed: 5, ..Default::default() }).unwrap();
    let (fast, reference) = (FastEncoder::new(), OutputEncoder::new());
    let mut pipeline = Pipeline::new(&EngineConfig::default()).unwrap();
    let mut tenants = Tenants::default();
    let (mut timelines, mut profiles, mut merges, mut rethreads, mut buf) = (0, 0, 0, 0, Vec::new());
    let mut interventions: Vec<Intervention> = Vec::new();
    for wire in world.events {
        let Ok(event) = wire.into_event(|t| tenants.get(t)) else { continue };
        let tenant = event.tenant.clone();
        let (step, ()) = pipeline.apply_inspect(event, |event, applied| {
            for m in merge_records(event, applied) {
                buf.clear();
                fast.merge(&m, &mut buf);
                assert_eq!(buf, reference.encode(OutputKind::ProfileMerge, &m).unwrap(), "merge {m:?}");
                merges += 1;
            }
            let Some(profile) = applied.profile else { return };
            buf.clear();
            let pid = profile.to_string();
            fast.timeline(
                &pid,
                (&applied.thread_id, applied.absorbed_thread.as_deref()),
                event,
                &applied.identifiers,
                &mut buf,
            );
            let expected =
                reference.encode(OutputKind::TimelineEntry, &timeline_record(profile, event, applied)).unwrap();
            assert_eq!(buf, expected, "timeline entry of {}", event.event_id);
            timelines += 1;
            rethreads += usize::from(applied.absorbed_thread.is_some());
        });
        interventions.extend(step.interventions);
        let Some(profile) = step.applied.profile else { continue };
        let identity = pipeline.engine().identity();
        let graph = identity.graph(&tenant).unwrap();
        let p = identity.profile(&tenant, profile).unwrap();
        buf.clear();
        let ids = graph.identifiers(p);
        fast.profile(
            tenant.as_str(),
            &p.id.to_string(),
            ids.iter().map(|i| (i.kind, &*i.value)),
            p.merged_from.iter(),
            p.first_seen.0,
            p.last_seen.0,
            p.event_count as i64,
            &mut buf,
        );
        let expected = reference.encode(OutputKind::Profile, &profile_record(&tenant, graph, p)).unwrap();
        assert_eq!(buf, expected, "profile {}", p.id);
        profiles += 1;
    }
    interventions.extend(pipeline.flush());
    for i in &interventions {
        buf.clear();
        fast.intervention(i, &mut buf);
        assert_eq!(buf, reference.encode(OutputKind::Intervention, i).unwrap(), "intervention {i:?}");
    }
    let moments = interventions.iter().map(|i| i.moment_type).collect::<std::collections::BTreeSet<_>>();
    assert!(timelines > 5_000 && profiles > 5_000, "the world exercised the encoders: {timelines} {profiles}");
    assert!(merges > 100 && moments.len() == 7, "merges and every moment type: {merges} {moments:?}");
    assert!(rethreads > 10, "conversations re-threaded by a case id: {rethreads}");
    assert!(interventions.iter().any(|i| i.case_id.is_none()) && interventions.iter().any(|i| i.case_id.is_some()));
}
