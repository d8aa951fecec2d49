//! Hand-made sequences with hand-computed numbers, and properties over random ones.

use omnistitch_model::{Channel, Direction, Event, EventKind, EventTime, Survey, Tenant};
use proptest::prelude::*;

use crate::histogram::RELATIVE_ERROR;
use crate::{CxConfig, CxMetrics, CxReport, CxRow};

use Channel::{Chat, Email, Phone, Social};
use Direction::{Inbound, Internal, Outbound};
use EventKind::*;

const SEC: i64 = 1_000;
const MIN: i64 = 60 * SEC;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

/// An event under construction; its thread id is what the engine's thread index would give.
#[derive(Clone, Debug)]
struct E(Event);

/// An event at `t`; what goes out is an agent's (see [`E::automated`]).
fn ev(t: i64, channel: Channel, direction: Direction, kind: EventKind) -> E {
    let mut e = Event::new(Tenant::new("acme"), format!("e{t}-{kind:?}"), EventTime(t), channel, direction, kind);
    if direction == Outbound {
        e.agent_id = Some("agent-7".into());
    }
    E(e)
}

impl E {
    /// Sent by no agent: an auto-acknowledgement or a bot.
    fn automated(mut self) -> Self {
        self.0.agent_id = None;
        self
    }
    fn case(mut self, id: &str) -> Self {
        self.0.case_id = Some(id.into());
        self
    }
    fn key(mut self, k: &str) -> Self {
        self.0.thread.key = Some(k.into());
        self
    }
    fn parent(mut self, k: &str) -> Self {
        self.0.thread.parent = Some(k.into());
        self
    }
    fn tenant(mut self, name: &str) -> Self {
        self.0.tenant = Tenant::new(name);
        self
    }
    fn survey(mut self, csat: Option<i32>, nps: Option<i32>, ces: Option<i32>) -> Self {
        self.0.survey = Some(Survey { csat, nps, ces });
        self
    }
    /// The thread id the caller passes: the case's, else the conversation root `root`.
    fn thread(&self, root: &str) -> String {
        match &self.0.case_id {
            Some(c) => format!("case:{c}"),
            None => root.to_string(),
        }
    }
}

fn metrics() -> CxMetrics {
    CxMetrics::new(CxConfig::default()).unwrap()
}

/// Feeds `(event, conversation root)` pairs.
fn feed(m: &mut CxMetrics, events: &[(E, &str)]) {
    for (e, root) in events {
        m.observe(&e.0, &e.thread(root));
    }
}

fn row(r: &CxReport, channel: Option<Channel>) -> &CxRow {
    r.row("acme", channel).unwrap()
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() <= b.abs() * RELATIVE_ERROR * 1.000_001 + 1e-9)
}

#[test]
fn first_response_per_channel_and_overall() {
    let mut m = metrics();
    feed(
        &mut m,
        &[
            // Email: the ticket (case 1) is opened after the mail; the reply quotes the case.
            // The auto-acknowledgement a second after the mail answers nobody.
            (ev(0, Email, Inbound, Message).key("email:m1"), "email:m1"),
            (ev(SEC, Email, Outbound, Message).key("email:ack1").parent("email:m1").automated(), "email:m1"),
            (ev(2 * MIN, Email, Internal, CaseOpened).case("1"), ""),
            (ev(30 * MIN, Email, Outbound, Message).key("email:m2").parent("email:m1").case("1"), ""),
            // Chat: the bot's greeting and the customer's second line are not responses; the
            // agent's message is.
            (ev(0, Chat, Inbound, ChatStarted).key("chat:s1"), "chat:s1"),
            (ev(1, Chat, Outbound, Message).key("chat:s1").automated(), "chat:s1"),
            (ev(20 * SEC, Chat, Inbound, Message).key("chat:s1"), "chat:s1"),
            (ev(80 * SEC, Chat, Outbound, Message).key("chat:s1"), "chat:s1"),
            (ev(90 * SEC, Chat, Outbound, Message).key("chat:s1"), "chat:s1"),
            // Phone: answering the call is the response.
            (ev(0, Phone, Inbound, CallStarted).key("call:c1"), "call:c1"),
            (ev(45 * SEC, Phone, Inbound, CallAnswered).key("call:c1"), "call:c1"),
            (ev(5 * MIN, Phone, Inbound, CallEnded).key("call:c1"), "call:c1"),
            // Social: a public reply two hours later.
            (ev(0, Social, Inbound, SocialPost).key("social:x:p1"), "social:x:p1"),
            (ev(2 * HOUR, Social, Outbound, SocialReply).key("social:x:p2").parent("social:x:p1"), "social:x:p1"),
        ],
    );
    let r = m.report();
    let secs = |c| row(&r, Some(c)).first_response.mean_seconds;
    assert_eq!(secs(Email), Some(1_800.0));
    assert_eq!(secs(Chat), Some(80.0));
    assert_eq!(secs(Phone), Some(45.0));
    assert_eq!(secs(Social), Some(7_200.0));
    let all = &row(&r, None).first_response;
    assert_eq!(all.count, 4);
    assert_eq!(all.mean_seconds, Some((1_800.0 + 80.0 + 45.0 + 7_200.0) / 4.0));
    // Nearest rank over [45, 80, 1800, 7200]: p50 is the 2nd, p90 the 4th.
    assert!(close(all.p50_seconds, 80.0), "{:?}", all.p50_seconds);
    assert!(close(all.p90_seconds, 7_200.0), "{:?}", all.p90_seconds);
    // The email thread and case 1 are one case, not two.
    assert_eq!(row(&r, Some(Email)).cases, 1);
    assert_eq!(row(&r, None).cases, 4);
}

#[test]
fn an_internal_call_leg_answers_nobody() {
    // A consult between agents while the customer waits, then the agent takes the call.
    let mut m = metrics();
    feed(
        &mut m,
        &[
            (ev(0, Phone, Inbound, CallStarted).key("call:c1").case("7"), "case:7"),
            (ev(30 * SEC, Phone, Internal, CallAnswered).key("call:c2").case("7"), "case:7"),
            (ev(2 * MIN, Phone, Inbound, CallAnswered).key("call:c1").case("7"), "case:7"),
        ],
    );
    assert_eq!(row(&m.report(), Some(Phone)).first_response.mean_seconds, Some(120.0));
}

#[test]
fn outreach_before_the_customer_writes_is_not_a_response() {
    let mut m = metrics();
    feed(
        &mut m,
        &[
            (ev(0, Email, Outbound, Message).key("email:o1"), "email:o1"),
            (ev(HOUR, Email, Inbound, Message).key("email:i1").parent("email:o1"), "email:o1"),
            (ev(3 * HOUR, Email, Outbound, Message).key("email:o2").parent("email:i1"), "email:o1"),
        ],
    );
    let r = m.report();
    assert_eq!(row(&r, Some(Email)).first_response.mean_seconds, Some(7_200.0));
    // The reply to the outreach is the customer's one contact.
    assert_eq!(row(&r, Some(Email)).contacts, 1);
}

#[test]
fn a_response_made_under_the_case_id_before_the_thread_joined_the_case_still_counts() {
    let mut m = metrics();
    feed(
        &mut m,
        &[
            (ev(0, Email, Inbound, Message).key("email:a"), "email:a"),
            // The agent answers in a new mail that carries the case id but replies to nothing.
            (ev(HOUR, Email, Outbound, Message).key("email:b").case("4"), ""),
            // Only now does the customer's thread meet the case.
            (ev(3 * HOUR, Email, Outbound, Message).key("email:c").parent("email:a").case("4"), ""),
        ],
    );
    let r = m.report();
    let email = row(&r, Some(Email));
    assert_eq!((email.cases, email.contacts), (1, 1));
    assert_eq!((email.first_response.count, email.first_response.mean_seconds), (1, Some(3_600.0)));
    assert_eq!(m.held_cases(), 1);
}

/// A chat's second message arrives before its first (which carries the case id), within the
/// lateness: the engine gave it the chat's own thread on arrival, but released in event order
/// it continues the chat of case X, as when the first arrives first. One contact, one case.
#[test]
fn the_thread_given_on_arrival_does_not_split_a_conversation() {
    let start = || ev(0, Chat, Inbound, ChatStarted).key("chat:s1").case("X");
    let second = || ev(20 * SEC, Chat, Inbound, Message).key("chat:s1");
    let reply = || ev(MIN, Chat, Outbound, Message).key("chat:s1").case("X");
    let mut reports = Vec::new();
    for thread in ["chat:s1", "case:X"] {
        let mut m = metrics();
        m.observe(&start().0, "case:X");
        m.observe(&second().0, thread);
        m.observe(&reply().0, "case:X");
        let r = m.report();
        let chat = row(&r, Some(Chat)).clone();
        assert_eq!((chat.contacts, chat.cases, chat.repeat_contact.matching), (1, 1, 0), "{thread}: {chat:?}");
        assert_eq!(m.held_cases(), 1, "{thread}");
        reports.push(r);
    }
    assert_eq!(reports[0], reports[1]);
}

/// Early responses kept are the earliest and the latest: a thread joining with an earlier first
/// contact is answered by the earliest response after it.
#[test]
fn a_case_with_many_early_responses_keeps_the_earliest() {
    let mut m = metrics();
    let mut events = vec![(ev(0, Email, Inbound, Message).key("email:a"), "email:a")];
    for h in 1..=5 {
        events.push((
            ev(h * HOUR, Email, Outbound, Message)
                .key(["email:r1", "email:r2", "email:r3", "email:r4", "email:r5"][h as usize - 1])
                .case("4"),
            "",
        ));
    }
    events.push((ev(6 * HOUR, Email, Outbound, Message).key("email:c").parent("email:a").case("4"), ""));
    feed(&mut m, &events);
    let r = m.report();
    let email = row(&r, Some(Email));
    assert_eq!((email.first_response.count, email.first_response.mean_seconds), (1, Some(3_600.0)));
}

#[test]
fn resolution_starts_at_the_earlier_of_opening_and_first_contact() {
    let mut m = metrics();
    feed(
        &mut m,
        &[
            // Case 1: contact at 0, opened at 10 min, resolved at 2 h: 7200 s.
            (ev(0, Chat, Inbound, ChatStarted).key("chat:s1").case("1"), ""),
            (ev(10 * MIN, Chat, Internal, CaseOpened).case("1"), ""),
            (ev(2 * HOUR, Chat, Internal, CaseResolved).case("1"), ""),
            // Case 2: opened at 0 with no contact, resolved a day later: 86400 s, attributed to
            // the channel of its first event.
            (ev(0, Email, Internal, CaseOpened).case("2"), ""),
            (ev(DAY, Email, Internal, CaseResolved).case("2"), ""),
            // Case 3: opened, never resolved.
            (ev(HOUR, Phone, Inbound, CallStarted).key("call:c3").case("3"), ""),
            // A later CASE_RESOLVED does not move the first one.
            (ev(DAY + HOUR, Chat, Internal, CaseResolved).case("1"), ""),
        ],
    );
    let r = m.report();
    assert_eq!(row(&r, Some(Chat)).resolution.timing.mean_seconds, Some(7_200.0));
    assert_eq!(row(&r, Some(Email)).resolution.timing.mean_seconds, Some(86_400.0));
    assert_eq!(row(&r, Some(Email)).cases, 0, "no inbound contact: not in case counts");
    let all = row(&r, None).resolution;
    assert_eq!((all.timing.count, all.open, all.expired), (2, 1, 0));
    assert_eq!(all.timing.mean_seconds, Some((7_200.0 + 86_400.0) / 2.0));

    // Fifteen idle days later (default limit 14) the unresolved case expires.
    feed(&mut m, &[(ev(16 * DAY, Email, Inbound, Message).key("email:late"), "email:late")]);
    let all = row(&m.report(), None).resolution;
    assert_eq!((all.timing.count, all.open, all.expired), (2, 1, 1), "the new email is open");
    assert_eq!(row(&m.report(), Some(Phone)).resolution.expired, 1);
}

#[test]
fn survey_arithmetic() {
    let mut m = metrics();
    let answers = [
        (Some(5), Some(10), Some(2)),
        (Some(4), Some(9), None),
        (Some(3), Some(7), Some(3)),
        (Some(1), Some(3), Some(7)),
        (None, None, None),
        // Off-scale answers are ignored (validation upstream should have refused them).
        (Some(6), Some(11), Some(0)),
    ];
    let events: Vec<(E, &str)> = answers
        .iter()
        .enumerate()
        .map(|(i, &(c, n, e))| (ev(i as i64 * MIN, Email, Inbound, SurveyResponse).case("9").survey(c, n, e), ""))
        .collect();
    feed(&mut m, &events);
    let r = m.report();
    let all = row(&r, None);
    assert_eq!((all.csat.matching, all.csat.total, all.csat.share), (2, 4, Some(0.5)));
    // Promoters 10, 9; detractors 3: (2 - 1) / 4 = +25.
    assert_eq!((all.nps.answers, all.nps.promoters, all.nps.detractors, all.nps.score), (4, 2, 1, Some(25.0)));
    assert_eq!((all.ces.answers, all.ces.mean), (3, Some(4.0)));
    // A survey is not a contact.
    assert_eq!((all.contacts, all.cases), (0, 0));
    // Channels without answers say so instead of NaN.
    let chat = row(&r, Some(Chat));
    assert_eq!((chat.csat.share, chat.nps.score, chat.ces.mean), (None, None, None));
    let json = serde_json::to_string(&r).unwrap();
    assert!(!json.contains("NaN") && !json.contains("null"));
}

#[test]
fn a_case_hopping_from_chat_to_phone_is_a_channel_switch() {
    let mut m = metrics();
    feed(
        &mut m,
        &[
            (ev(0, Chat, Inbound, ChatStarted).key("chat:s1"), "chat:s1"),
            (ev(30 * SEC, Chat, Inbound, Message).key("chat:s1"), "chat:s1"),
            (ev(MIN, Chat, Outbound, Message).key("chat:s1").case("7"), ""),
            (ev(2 * MIN, Chat, Inbound, ChatAbandoned).key("chat:s1").case("7"), ""),
            // The customer calls; the call gets the case id only when it ends.
            (ev(HOUR, Phone, Inbound, CallStarted).key("call:c1"), "call:c1"),
            (ev(HOUR + 2 * MIN, Phone, Inbound, CallAnswered).key("call:c1"), "call:c1"),
            (ev(HOUR + 9 * MIN, Phone, Inbound, CallEnded).key("call:c1").case("7"), ""),
        ],
    );
    let r = m.report();
    let chat = row(&r, Some(Chat));
    assert_eq!((chat.cases, chat.channel_switch.matching, chat.repeat_contact.matching), (1, 1, 1));
    assert_eq!(chat.channel_switch.share, Some(1.0));
    // The case's first response is the chat reply; the call's answer is not a second one.
    assert_eq!((chat.first_response.count, chat.first_response.mean_seconds), (1, Some(60.0)));
    assert_eq!(row(&r, Some(Chat)).contacts, 1, "one session, three inbound events");
    assert_eq!(row(&r, Some(Phone)).contacts, 1);
    assert_eq!(row(&r, Some(Phone)).cases, 0, "the case is attributed to chat");
    assert_eq!(m.held_cases(), 1);
}

#[test]
fn contacts_count_conversations_not_events() {
    let mut m = metrics();
    feed(
        &mut m,
        &[
            // One email chain with two customer messages: one contact.
            (ev(0, Email, Inbound, Message).key("email:a").case("5"), ""),
            (ev(HOUR, Email, Outbound, Message).key("email:b").parent("email:a").case("5"), ""),
            (ev(2 * HOUR, Email, Inbound, Message).key("email:c").parent("email:b").case("5"), ""),
            // A fresh email about the same case: a second contact, so the case repeats.
            (ev(DAY, Email, Inbound, Message).key("email:d").case("5"), ""),
            // A call abandoned in the queue and the retry: two calls, two contacts.
            (ev(0, Phone, Inbound, CallStarted).key("call:1").case("6"), ""),
            (ev(MIN, Phone, Inbound, CallAbandoned).key("call:1").case("6"), ""),
            (ev(HOUR, Phone, Inbound, CallStarted).key("call:2").case("6"), ""),
            // A callback placed by the brand is not the customer's contact.
            (ev(2 * HOUR, Phone, Outbound, CallStarted).key("call:3").case("6"), ""),
            (ev(2 * HOUR + 10 * SEC, Phone, Outbound, CallAnswered).key("call:3").case("6"), ""),
        ],
    );
    let r = m.report();
    let email = row(&r, Some(Email));
    assert_eq!((email.contacts, email.cases, email.repeat_contact.matching), (2, 1, 1));
    assert_eq!(email.first_response.mean_seconds, Some(3_600.0));
    let phone = row(&r, Some(Phone));
    assert_eq!((phone.contacts, phone.repeat_contact.matching, phone.channel_switch.matching), (2, 1, 0));
    // The callback answered at 2 h 10 s answers the first call.
    assert_eq!(phone.first_response.mean_seconds, Some(7_210.0));
    let all = row(&r, None);
    assert_eq!((all.repeat_contact.share, all.channel_switch.share), (Some(1.0), Some(0.0)));
}

/// Cases are keyed by thread, never by profile: a case reached by email and by phone (two
/// profiles, before identity merged them) is one case, with its channel switch; how identity
/// splits or merges customers cannot change the metrics, so the stage takes no profile.
#[test]
fn a_case_reached_on_two_channels_is_one_case_with_a_switch() {
    let events: Vec<E> = vec![
        ev(0, Email, Inbound, Message).key("email:a").case("1"),
        ev(MIN, Phone, Inbound, CallStarted).key("call:b").case("2"),
        ev(2 * MIN, Email, Inbound, Message).key("email:c").case("3"),
        ev(3 * MIN, Phone, Inbound, CallStarted).key("call:d").case("3"),
    ];
    let mut m = metrics();
    for e in &events {
        m.observe(&e.0, &e.thread(""));
    }
    assert_eq!(row(&m.report(), None).resolution.open, 3);
    for e in [ev(HOUR, Email, Internal, CaseResolved).case("1"), ev(2 * HOUR, Phone, Internal, CaseResolved).case("2")]
    {
        m.observe(&e.0, &e.thread(""));
    }
    let r = m.report();
    let all = row(&r, None);
    assert_eq!((all.cases, all.resolution.timing.count, all.resolution.open), (3, 2, 1));
    assert_eq!((all.channel_switch.matching, row(&r, Some(Email)).channel_switch.matching), (1, 1));
    assert_eq!(all.resolution.timing.mean_seconds, Some((3_600.0 + 7_140.0) / 2.0));
}

#[test]
fn tenants_never_mix() {
    let mut m = metrics();
    // Same case id, same keys, different tenants: the reply in globex answers nobody in acme.
    feed(
        &mut m,
        &[
            (ev(0, Chat, Inbound, ChatStarted).key("chat:s").case("1"), ""),
            (ev(MIN, Chat, Outbound, Message).key("chat:s").case("1").tenant("globex"), ""),
            (ev(2 * MIN, Chat, Inbound, SurveyResponse).case("1").tenant("globex").survey(Some(5), None, None), ""),
        ],
    );
    let r = m.report();
    assert_eq!(r.rows.len(), 10, "four channels and all, per tenant");
    let acme = r.row("acme", None).unwrap();
    let globex = r.row("globex", None).unwrap();
    assert_eq!((acme.contacts, acme.first_response.count, acme.csat.total), (1, 0, 0));
    assert_eq!((globex.contacts, globex.first_response.count, globex.csat.total), (0, 0, 1));
    // Rows come by tenant name.
    assert_eq!(r.rows[0].tenant.as_str(), "acme");
    assert_eq!(r.rows[9].tenant.as_str(), "globex");
}

#[test]
fn state_is_evicted_on_event_time_and_capped() {
    let mut m = CxMetrics::new(CxConfig { survey_window_days: 1, case_idle_days: 2, max_cases_per_tenant: 3 }).unwrap();
    feed(
        &mut m,
        &[
            (ev(0, Chat, Inbound, ChatStarted).key("chat:1").case("1"), ""),
            (ev(HOUR, Chat, Internal, CaseResolved).case("1"), ""),
            (ev(HOUR + 10 * MIN, Chat, Inbound, SurveyResponse).case("1").survey(Some(5), None, None), ""),
        ],
    );
    assert_eq!(m.held_cases(), 1);
    // Two days on, the resolved case is closed; its survey stays attributed to chat.
    feed(&mut m, &[(ev(2 * DAY, Email, Inbound, Message).key("email:x"), "email:x")]);
    assert_eq!(m.held_cases(), 1);
    // A survey after the window starts a case of its own, on the survey's channel.
    feed(&mut m, &[(ev(2 * DAY + MIN, Email, Inbound, SurveyResponse).case("1").survey(Some(2), None, None), "")]);
    let r = m.report();
    assert_eq!(row(&r, Some(Chat)).csat.share, Some(1.0));
    assert_eq!(row(&r, Some(Email)).csat.share, Some(0.0));
    assert_eq!(row(&r, Some(Chat)).resolution.timing.count, 1);

    // The cap: ten simultaneous open cases, at most three held; the rest are expired.
    let events: Vec<(E, &str)> = (0..10)
        .map(|i| (ev(3 * DAY + i, Phone, Inbound, CallStarted).key(&format!("call:{i}")).case(&format!("c{i}")), ""))
        .collect();
    feed(&mut m, &events);
    assert_eq!(m.held_cases(), 3);
    let phone = row(&m.report(), Some(Phone)).resolution;
    assert_eq!((phone.open, phone.expired), (3, 7));
    assert_eq!(row(&m.report(), Some(Phone)).contacts, 10, "closing a case keeps its counts");
}

/// A survey that comes after its case's window starts a case of its own on its own channel,
/// whether or not another event of the tenant came in between; so does a quiet tenant's clock.
#[test]
fn a_case_past_its_deadline_never_takes_the_event_that_passes_it() {
    let chat_case = || {
        [
            (ev(0, Chat, Inbound, ChatStarted).key("chat:1").case("1"), ""),
            (ev(HOUR, Chat, Internal, CaseResolved).case("1"), ""),
        ]
    };
    let late_survey = (ev(8 * DAY, Email, Inbound, SurveyResponse).case("1").survey(Some(1), None, None), "");
    let mut alone = metrics();
    feed(&mut alone, &chat_case());
    feed(&mut alone, std::slice::from_ref(&late_survey));
    let mut with_other = metrics();
    feed(&mut with_other, &chat_case());
    feed(&mut with_other, &[(ev(7 * DAY + HOUR + 1, Phone, Inbound, CallStarted).key("call:x"), "call:x")]);
    feed(&mut with_other, std::slice::from_ref(&late_survey));
    for m in [&alone, &with_other] {
        let r = m.report();
        assert_eq!((row(&r, Some(Email)).csat.total, row(&r, Some(Chat)).csat.total), (1, 0));
    }
    // A case open on day 2 and resolved on day 40, idle between: expired on day 16 (14 days
    // idle), its resolution a case of its own; with or without a quiet tenant's clock move.
    let idle = [
        (ev(2 * DAY, Chat, Inbound, ChatStarted).key("chat:2").case("2"), ""),
        (ev(40 * DAY, Chat, Internal, CaseResolved).case("2"), ""),
    ];
    let mut m = metrics();
    feed(&mut m, &idle);
    let chat = row(&m.report(), Some(Chat)).resolution;
    assert_eq!((chat.timing.count, chat.expired), (0, 1));
    let mut m = metrics();
    feed(&mut m, &idle[..1]);
    m.advance_clock(&Tenant::new("acme"), EventTime(17 * DAY));
    assert_eq!((m.held_cases(), row(&m.report(), Some(Chat)).resolution.expired), (0, 1));
}

#[test]
fn conversation_keys_stay_bounded_and_leave_with_their_case() {
    let mut m = metrics();
    let mail =
        |i: i64| (ev(i * MIN, Email, Inbound, Message).key(&format!("email:{i}")).parent("email:0").case("big"), "");
    // 65 mails of one case, all replying to the first: the 65th key pushes the first one out.
    for i in 0..65 {
        feed(&mut m, &[mail(i)]);
    }
    assert_eq!(m.key_counts(), (crate::case::MAX_KEYS_PER_CASE, 0));
    assert_eq!(row(&m.report(), Some(Email)).contacts, 1);
    // A reply to the forgotten first mail now starts a new conversation: a second contact.
    feed(&mut m, &[mail(65)]);
    assert_eq!(row(&m.report(), Some(Email)).contacts, 2);
    // A month later everything idle is closed, and its keys are gone from the index.
    feed(&mut m, &[(ev(30 * DAY, Chat, Inbound, ChatStarted), "chat:x")]);
    assert_eq!(m.key_counts(), (0, 0));
    assert_eq!(m.held_cases(), 1);
}

#[test]
fn percentiles_over_many_cases_stay_within_the_documented_error() {
    let mut m = metrics();
    // FRTs of 1, 2, ..., 1000 seconds: nearest-rank p50 = 500 s, p90 = 900 s.
    for i in 1..=1_000i64 {
        let k = format!("chat:{i}");
        let t = i * DAY / 100;
        feed(
            &mut m,
            &[(ev(t, Chat, Inbound, ChatStarted).key(&k), &k), (ev(t + i * SEC, Chat, Outbound, Message).key(&k), &k)],
        );
    }
    let frt = row(&m.report(), None).first_response;
    assert_eq!(frt.count, 1_000);
    assert_eq!(frt.mean_seconds, Some(500.5));
    assert!(close(frt.p50_seconds, 500.0), "{:?}", frt.p50_seconds);
    assert!(close(frt.p90_seconds, 900.0), "{:?}", frt.p90_seconds);
}

#[test]
fn display_is_an_aligned_table() {
    let mut m = metrics();
    feed(
        &mut m,
        &[
            (ev(0, Chat, Inbound, ChatStarted).key("chat:1"), "chat:1"),
            (ev(95 * SEC, Chat, Outbound, Message).key("chat:1"), "chat:1"),
        ],
    );
    let text = m.report().to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 6, "{text}");
    assert!(lines[0].starts_with("tenant  channel  contacts"), "{text}");
    // Right-aligned numbers end in the same column.
    let end = |l: &str| l.find("contacts").map(|i| i + "contacts".len());
    let col = end(lines[0]).unwrap();
    assert_eq!(&lines[2][col - 1..col], "1", "{text}");
    assert!(lines[2].contains("1.6m"), "{text}");
    assert!(lines[5].starts_with("acme    all"), "{text}");

    // A tenant named like a phone number (a producer's mistake) is not printed to the log.
    let mut m = metrics();
    let mut e = ev(0, Chat, Inbound, ChatStarted).key("chat:1");
    e.0.tenant = Tenant::new("+14155550134");
    feed(&mut m, &[(e, "chat:1")]);
    let text = m.report().to_string();
    assert!(!text.contains("4155550134") && text.contains("(withheld)"), "{text}");
}

/// A random but well-formed stream: cases with and without case ids on every channel.
fn stream() -> impl Strategy<Value = Vec<(E, String)>> {
    let step = (0u8..4, 0u8..4, 0u8..6, 0u8..3, any::<bool>(), 0i64..3 * HOUR);
    proptest::collection::vec(step, 1..60).prop_map(|steps| {
        let mut t = 0;
        steps
            .into_iter()
            .enumerate()
            .map(|(i, (conv, chan, what, case, with_case, gap))| {
                t += gap;
                let channel = Channel::ALL[chan as usize];
                let (direction, kind) = match what {
                    0 => (Inbound, if channel == Phone { CallStarted } else { Message }),
                    1 => (Outbound, if channel == Phone { CallAnswered } else { Message }),
                    2 => (Inbound, if channel == Chat { ChatAbandoned } else { Review }),
                    3 => (Internal, CaseOpened),
                    4 => (Internal, CaseResolved),
                    _ => (Inbound, SurveyResponse),
                };
                let root = format!("{}:{conv}", channel.as_str());
                let mut e = ev(t, channel, direction, kind).key(&format!("{root}/{i}")).parent(&root);
                e.0.event_id = format!("e{i}").into();
                if what == 5 {
                    e = e.survey(Some(1 + i as i32 % 5), Some(i as i32 % 11), None);
                }
                if with_case {
                    e = e.case(&case.to_string());
                }
                let thread = e.thread(&root);
                (e, thread)
            })
            .collect()
    })
}

proptest! {
    #[test]
    fn interleaved_tenants_report_as_if_alone(events in stream(), tenant_of in proptest::collection::vec(any::<bool>(), 60)) {
        let mut together = metrics();
        let (mut acme, mut globex) = (metrics(), metrics());
        for (i, (e, thread)) in events.iter().enumerate() {
            let alone = if tenant_of[i] { &mut globex } else { &mut acme };
            let e = if tenant_of[i] { e.clone().tenant("globex") } else { e.clone() };
            together.observe(&e.0, thread);
            alone.observe(&e.0, thread);
        }
        let mut expected = acme.report().rows;
        expected.extend(globex.report().rows);
        prop_assert_eq!(together.report().rows, expected);
    }

    #[test]
    fn reports_are_consistent(events in stream()) {
        let mut m = metrics();
        for (e, thread) in &events {
            m.observe(&e.0, thread);
        }
        let r = m.report();
        let all = row(&r, None);
        let sum = |f: fn(&CxRow) -> u64| Channel::ALL.iter().map(|&c| f(row(&r, Some(c)))).sum::<u64>();
        prop_assert_eq!(all.contacts, sum(|r| r.contacts));
        prop_assert_eq!(all.cases, sum(|r| r.cases));
        prop_assert_eq!(all.first_response.count, sum(|r| r.first_response.count));
        prop_assert!(all.repeat_contact.matching <= all.cases && all.channel_switch.matching <= all.repeat_contact.matching);
        prop_assert!(all.cases <= all.contacts);
        prop_assert!(m.held_cases() <= events.len());
        prop_assert_eq!(m.key_counts().1, 0, "index entries pointing nowhere");
        let json = serde_json::to_string(&r).unwrap();
        prop_assert!(!json.contains("NaN") && !json.contains("null"));
    }
}
