//! Timeline ordering, deduplication, merging, threading and retention.

use std::collections::BTreeSet;

use omnistitch_model::{Channel, Direction, Event, EventKind, EventTime, ProfileId, Tenant};
use omnistitch_timeline::{RetentionConfig, TimelineStore};
use proptest::prelude::*;

const DAY: i64 = 86_400_000;

fn ev(id: &str, t: i64) -> Event {
    Event::new(
        Tenant::new("acme"),
        id,
        EventTime(1_700_000_000_000 + t),
        Channel::Email,
        Direction::Inbound,
        EventKind::Message,
    )
}

fn ids(store: &TimelineStore, p: ProfileId) -> Vec<String> {
    store.timeline("acme", p).unwrap().entries().iter().map(|e| e.event_id.to_string()).collect()
}

fn p(n: u8) -> ProfileId {
    ProfileId::derive("acme", &n.to_string())
}

#[test]
fn late_events_go_in_place_and_duplicates_once() {
    let mut s = TimelineStore::new(RetentionConfig::default());
    assert_eq!(s.append(p(1), &ev("b", 20)).position, Some(0));
    assert_eq!(s.append(p(1), &ev("c", 30)).position, Some(1));
    assert_eq!(s.append(p(1), &ev("a", 10)).position, Some(0), "late event first");
    assert_eq!(s.append(p(1), &ev("b", 20)).position, None, "redelivery");
    assert_eq!(ids(&s, p(1)), ["a", "b", "c"]);
}

#[test]
fn the_newest_event_again_and_same_time_events_keep_order() {
    let mut s = TimelineStore::new(RetentionConfig::default());
    assert_eq!(s.append(p(1), &ev("m", 10)).position, Some(0));
    assert_eq!(s.append(p(1), &ev("m", 10)).position, None, "redelivery of the newest event");
    // At one time, entries are ordered by event id: after the last one, or before it.
    assert_eq!(s.append(p(1), &ev("z", 10)).position, Some(1));
    assert_eq!(s.append(p(1), &ev("c", 10)).position, Some(0));
    assert_eq!(ids(&s, p(1)), ["c", "m", "z"]);
}

#[test]
fn an_event_in_order_still_evicts_what_aged_out() {
    let mut s = TimelineStore::new(RetentionConfig { max_events_per_profile: 100, max_age_days: 10 });
    s.append(p(1), &ev("old", 0));
    s.append(p(1), &ev("mid", 5 * DAY));
    let appended = s.append(p(1), &ev("new", 12 * DAY));
    assert_eq!((appended.position, appended.evicted), (Some(1), 1));
    assert_eq!(ids(&s, p(1)), ["mid", "new"]);
}

#[test]
fn merging_interleaves_both_timelines() {
    let mut s = TimelineStore::new(RetentionConfig::default());
    for (id, t) in [("a", 1), ("c", 3), ("e", 5)] {
        s.append(p(1), &ev(id, t));
    }
    for (id, t) in [("b", 2), ("c", 3), ("d", 4)] {
        s.append(p(2), &ev(id, t));
    }
    assert_eq!(s.merge("acme", p(1), p(2)), 0);
    assert_eq!(ids(&s, p(1)), ["a", "b", "c", "d", "e"]);
    assert!(s.timeline("acme", p(2)).is_none());
}

#[test]
fn a_merge_past_the_count_limit_evicts_the_oldest_and_says_how_many() {
    let mut s = TimelineStore::new(RetentionConfig { max_events_per_profile: 3, ..RetentionConfig::default() });
    for (id, t) in [("a", 1), ("c", 3)] {
        s.append(p(1), &ev(id, t));
    }
    for (id, t) in [("b", 2), ("d", 4)] {
        s.append(p(2), &ev(id, t));
    }
    assert_eq!(s.merge("acme", p(1), p(2)), 1);
    assert_eq!(ids(&s, p(1)), ["b", "c", "d"]);
    assert_eq!(s.evicted_total(), 1);
}

#[test]
fn retention_evicts_by_count_and_age_and_counts_it() {
    let mut s = TimelineStore::new(RetentionConfig { max_events_per_profile: 3, max_age_days: 10 });
    for i in 0..5 {
        s.append(p(1), &ev(&format!("e{i}"), i));
    }
    assert_eq!(ids(&s, p(1)), ["e2", "e3", "e4"]);
    assert_eq!(s.evicted_total(), 2);
    s.append(p(2), &ev("new", 11 * DAY));
    assert_eq!(s.evict_expired(), 3);
    assert!(s.timeline("acme", p(1)).is_none());
    assert_eq!(s.evicted_total(), 5);
    // An event already older than retention allows is not kept.
    assert_eq!(s.append(p(2), &ev("ancient", 0)).position, None);
}

#[test]
fn each_tenant_keeps_its_history_by_its_own_clock() {
    let mut s = TimelineStore::new(RetentionConfig { max_events_per_profile: 100, max_age_days: 10 });
    // Globex is live, a year ahead of acme, whose history is being loaded.
    let mut live = ev("g1", 365 * DAY);
    live.tenant = Tenant::new("globex");
    let globex = ProfileId::derive("globex", "g");
    s.append(globex, &live);
    assert_eq!(s.append(p(1), &ev("a1", 0)).position, Some(0), "not older than acme's own retention");
    assert_eq!(s.append(p(1), &ev("a2", 5 * DAY)).position, Some(1));
    assert_eq!(s.evict_expired(), 0);
    assert_eq!(ids(&s, p(1)), ["a1", "a2"]);
    assert_eq!(s.watermark("acme"), Some(EventTime(1_700_000_000_000 + 5 * DAY)));
    // Acme's own clock moving on evicts its old entries, and only for acme.
    s.append(p(1), &ev("a3", 16 * DAY));
    assert_eq!(ids(&s, p(1)), ["a3"]);
    assert_eq!(s.timeline("globex", globex).unwrap().len(), 1);
}

#[test]
fn conversations_thread_across_channels_by_case_and_replies() {
    let mut s = TimelineStore::new(RetentionConfig::default());
    let mut chat = ev("chat1", 0);
    chat.channel = Channel::Chat;
    chat.thread.key = Some("chat:S1".into());
    let t_chat = s.append(p(1), &chat).thread_id;
    assert_eq!(&*t_chat, "chat:S1");
    // The case id arrives later in the same chat: the conversation becomes the case's thread.
    let mut chat2 = ev("chat2", 1);
    chat2.thread.key = Some("chat:S1".into());
    chat2.case_id = Some("C9".into());
    let joined = s.append(p(1), &chat2);
    assert_eq!((&*joined.thread_id, joined.absorbed_thread.as_deref()), ("case:C9", Some("chat:S1")));
    // The call about the same case joins it; so does an email replying to the case's email.
    let mut call = ev("call", 2);
    call.channel = Channel::Phone;
    call.thread.key = Some("call:K".into());
    call.case_id = Some("C9".into());
    let call_in = s.append(p(1), &call);
    assert_eq!((&*call_in.thread_id, call_in.absorbed_thread), ("case:C9", None), "nothing re-threaded");
    let mut mail = ev("mail", 3);
    mail.thread.key = Some("email:<m2>".into());
    mail.thread.parent = Some("chat:S1".into());
    assert_eq!(&*s.append(p(1), &mail).thread_id, "case:C9");
    let threads: BTreeSet<_> =
        s.timeline("acme", p(1)).unwrap().entries().iter().map(|e| e.thread_id().to_string()).collect();
    assert_eq!(threads, BTreeSet::from(["case:C9".to_string()]), "earlier entries re-threaded");
    // An unrelated email starts its own thread.
    let mut other = ev("other", 4);
    other.thread.key = Some("email:<m3>".into());
    assert_eq!(&*s.append(p(1), &other).thread_id, "email:<m3>");
}

#[test]
fn a_case_id_re_threads_a_conversation_on_every_profile() {
    let mut s = TimelineStore::new(RetentionConfig::default());
    // A message from a team mailbox (its own profile) and the customer's reply (theirs).
    let mut m1 = ev("m1", 0);
    m1.thread.key = Some("email:<m1>".into());
    s.append(p(1), &m1);
    let mut reply = ev("reply", 1);
    reply.thread.key = Some("email:<r1>".into());
    reply.thread.parent = Some("email:<m1>".into());
    assert_eq!(&*s.append(p(2), &reply).thread_id, "email:<m1>");
    // The agent's answer on the customer's profile names the case.
    let mut answer = ev("answer", 2);
    answer.thread.key = Some("email:<a1>".into());
    answer.thread.parent = Some("email:<r1>".into());
    answer.case_id = Some("C4".into());
    assert_eq!(&*s.append(p(2), &answer).thread_id, "case:C4");
    for profile in [p(1), p(2)] {
        let threads: BTreeSet<String> =
            s.timeline("acme", profile).unwrap().entries().iter().map(|e| e.thread_id().to_string()).collect();
        assert_eq!(threads, BTreeSet::from(["case:C4".to_string()]), "{profile}");
    }
}

#[test]
fn a_reply_under_another_case_id_does_not_join_two_cases() {
    let mut s = TimelineStore::new(RetentionConfig::default());
    let mut y = ev("y1", 0);
    y.thread.key = Some("email:<y1>".into());
    y.case_id = Some("Y".into());
    assert_eq!(&*s.append(p(1), &y).thread_id, "case:Y");
    // The agent answers the ticket-Y message from ticket X (a merged or new ticket).
    let mut x = ev("x1", 1);
    x.direction = Direction::Outbound;
    x.thread.key = Some("email:<x1>".into());
    x.thread.parent = Some("email:<y1>".into());
    x.case_id = Some("X".into());
    assert_eq!(&*s.append(p(1), &x).thread_id, "case:X");
    // Case Y keeps its history and its own later events.
    let threads: Vec<String> =
        s.timeline("acme", p(1)).unwrap().entries().iter().map(|e| e.thread_id().to_string()).collect();
    assert_eq!(threads, ["case:Y", "case:X"]);
    let mut y2 = ev("y2", 2);
    y2.case_id = Some("Y".into());
    assert_eq!(&*s.append(p(1), &y2).thread_id, "case:Y");
    // A customer reply to the agent's message follows the reply chain into case X.
    let mut r = ev("r", 3);
    r.thread.key = Some("email:<r>".into());
    r.thread.parent = Some("email:<x1>".into());
    assert_eq!(&*s.append(p(1), &r).thread_id, "case:X");
}

proptest! {
    /// Any arrival order and any number of redeliveries give the same sorted timeline: nothing lost,
    /// nothing duplicated.
    #[test]
    fn order_and_redelivery_do_not_change_the_timeline(
        times in prop::collection::vec(0i64..1_000, 1..60),
        order_seed in any::<u64>(),
        dups in prop::collection::vec(any::<prop::sample::Index>(), 0..20),
    ) {
        let events: Vec<Event> = times.iter().enumerate().map(|(i, &t)| ev(&format!("e{i:03}"), t)).collect();
        let mut arrival: Vec<&Event> = events.iter().collect();
        arrival.extend(dups.iter().map(|d| &events[d.index(events.len())]));
        let mut s = order_seed | 1;
        for i in (1..arrival.len()).rev() {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            arrival.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let mut store = TimelineStore::new(RetentionConfig::default());
        for e in arrival {
            store.append(p(1), e);
        }
        let mut expected: Vec<(i64, String)> = events.iter().map(|e| (e.time.0, e.event_id.to_string())).collect();
        expected.sort();
        let got: Vec<(i64, String)> =
            store.timeline("acme", p(1)).unwrap().entries().iter().map(|e| (e.time.0, e.event_id.to_string())).collect();
        prop_assert_eq!(got, expected);
    }
}

proptest! {
    /// The entry count the store keeps equals the entries its timelines hold, through appends
    /// (redeliveries and events too old for retention among them), merges and evictions.
    #[test]
    fn the_entry_count_follows_every_change(
        steps in prop::collection::vec((0u8..4, 0u8..6, 0u8..6, 0i64..40), 1..120),
    ) {
        let retention = RetentionConfig { max_events_per_profile: 5, max_age_days: 2 };
        let mut s = TimelineStore::new(retention);
        for (i, (op, a, b, day)) in steps.into_iter().enumerate() {
            match op {
                0 | 1 => {
                    // Ids repeat (redeliveries at the same time), days jump past the retention.
                    let id = format!("e{}", i % 9);
                    s.append(p(a), &ev(&id, day * DAY / 4 + i64::from(a)));
                }
                2 if a != b => {
                    s.merge("acme", p(a), p(b));
                }
                _ => {
                    s.evict_expired();
                }
            }
            let held: usize = s.timelines().map(|(_, t)| t.len()).sum();
            prop_assert_eq!(s.entry_count(), held);
        }
    }
}
