//! Hand-written scenarios for every moment, and properties over random traffic.

use std::collections::BTreeSet;

use omnistitch_model::{Channel, Direction, Event, EventKind, EventTime, ProfileId, Survey, Tenant};
use proptest::prelude::*;

use crate::{Detector, Intervention, MomentType, MomentsConfig, MomentsPipeline, Priority};

use Channel::{Chat, Email, Phone, Social};
use Direction::{Inbound, Internal, Outbound};
use EventKind::*;
use MomentType::*;

const SEC: i64 = 1_000;
const MIN: i64 = 60 * SEC;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;
/// 2026-01-05T00:00:00Z.
const T0: i64 = 1_767_571_200_000;

/// An event under construction, with the thread id the engine would give it.
#[derive(Clone, Debug)]
struct E {
    event: Event,
    thread: Option<String>,
}

/// An event at `T0 + t`; what goes out is an agent's (see [`E::automated`]).
fn ev(id: &str, t: i64, channel: Channel, direction: Direction, kind: EventKind) -> E {
    let mut event = Event::new(Tenant::new("acme"), id, EventTime(T0 + t), channel, direction, kind);
    if direction == Outbound {
        event.agent_id = Some("agent-7".into());
    }
    E { event, thread: None }
}

impl E {
    /// Sent by no agent: an auto-acknowledgement or a bot.
    fn automated(mut self) -> Self {
        self.event.agent_id = None;
        self
    }
    fn case(mut self, id: &str) -> Self {
        self.event.case_id = Some(id.into());
        self
    }
    fn key(mut self, k: &str) -> Self {
        self.event.thread.key = Some(k.into());
        self
    }
    fn parent(mut self, k: &str) -> Self {
        self.event.thread.parent = Some(k.into());
        self
    }
    /// The thread id the engine gave, when it is not the case's or the event's own key.
    fn thread(mut self, t: &str) -> Self {
        self.thread = Some(t.into());
        self
    }
    fn tenant(mut self, name: &str) -> Self {
        self.event.tenant = Tenant::new(name);
        self
    }
    fn sentiment(mut self, s: f64) -> Self {
        self.event.sentiment = Some(s);
        self
    }
    fn text(mut self, s: &str) -> Self {
        self.event.text = Some(s.into());
        self
    }
    fn survey(mut self, csat: Option<i32>, nps: Option<i32>, ces: Option<i32>) -> Self {
        self.event.survey = Some(Survey { csat, nps, ces });
        self
    }
    fn wait(mut self, ms: i64) -> Self {
        self.event.details.queue_wait_ms = Some(ms);
        self
    }
    fn transfers(mut self, n: i32) -> Self {
        self.event.details.transfers = Some(n);
        self
    }
    fn thread_id(&self) -> String {
        if let Some(t) = &self.thread {
            return t.clone();
        }
        match (&self.event.case_id, &self.event.thread.key) {
            (Some(c), _) => format!("case:{c}"),
            (None, Some(k)) => k.to_string(),
            (None, None) => format!("event:{}", self.event.event_id),
        }
    }
}

fn pid(n: u8) -> ProfileId {
    ProfileId::derive("acme", &format!("p{n}"))
}

/// A detector fed in order, collecting what it emits.
struct Run {
    d: Detector,
    out: Vec<Intervention>,
}

impl Run {
    fn new() -> Self {
        Self::with(MomentsConfig::default())
    }
    fn with(config: MomentsConfig) -> Self {
        Run { d: Detector::new(config).unwrap(), out: Vec::new() }
    }
    fn feed(&mut self, profile: ProfileId, e: E) -> &mut Self {
        let thread = e.thread_id();
        let got = self.d.observe(profile, &e.event, &thread);
        self.out.extend(got);
        self
    }
    fn all(&mut self, profile: ProfileId, events: Vec<E>) -> &mut Self {
        for e in events {
            self.feed(profile, e);
        }
        self
    }
    /// Passes the watermark of "acme" to `T0 + t`.
    fn wm(&mut self, t: i64) -> &mut Self {
        let got = self.d.advance_watermark(&Tenant::new("acme"), EventTime(T0 + t));
        self.out.extend(got);
        self
    }
    fn of(&self, m: MomentType) -> Vec<&Intervention> {
        self.out.iter().filter(|i| i.moment_type == m).collect()
    }
    fn one(&self, m: MomentType) -> &Intervention {
        let found = self.of(m);
        assert_eq!(found.len(), 1, "{m}: {:#?}", self.out);
        found[0]
    }
    fn none(&self, m: MomentType) {
        assert!(self.of(m).is_empty(), "{m}: {:#?}", self.of(m));
    }
}

fn evidence(i: &Intervention) -> Vec<&str> {
    i.evidence.iter().map(|e| e.event_id.as_str()).collect()
}

/// A chat that an agent links to case C1, ending 10 min after T0 + `at`.
fn linked_chat(at: i64) -> Vec<E> {
    vec![
        ev("chat-start", at, Chat, Inbound, ChatStarted).key("chat:S1"),
        ev("chat-agent", at + 30 * SEC, Chat, Outbound, Message).key("chat:S1").case("C1"),
        ev("chat-msg", at + MIN, Chat, Inbound, Message).key("chat:S1").thread("case:C1"),
        ev("chat-agent2", at + 90 * SEC, Chat, Outbound, Message).key("chat:S1").case("C1"),
        ev("chat-end", at + 10 * MIN, Chat, Internal, ChatEnded).key("chat:S1").case("C1"),
    ]
}

// ---------------------------------------------------------------- channel_hop

#[test]
fn channel_hop_fires_on_a_new_conversation_on_another_channel() {
    let mut r = Run::new();
    r.all(pid(1), linked_chat(0));
    r.feed(pid(1), ev("call", 40 * MIN, Phone, Inbound, CallStarted).key("call:K1"));
    let i = r.one(ChannelHop);
    assert_eq!(i.detected_at, EventTime(T0 + 40 * MIN));
    assert_eq!(i.case_id.as_deref(), Some("C1"));
    assert_eq!(i.recommended_channel, Phone);
    assert_eq!(i.priority, Priority::High);
    assert_eq!(evidence(i), ["chat-msg", "call"]);
    assert_eq!(i.intervention_id, Intervention::derive_id("acme", ChannelHop, "call"));
    assert_eq!(i.expires_at, EventTime(T0 + 40 * MIN + DAY));
    assert_eq!(i.reason, "new phone conversation 39 min after the open case's last contact on chat");
}

#[test]
fn channel_hop_window_is_inclusive_and_ends_there() {
    // The last inbound contact is the chat message at +1 min.
    let at = |gap: i64| {
        let mut r = Run::new();
        r.all(pid(1), linked_chat(0));
        r.feed(pid(1), ev("call", MIN + gap, Phone, Inbound, CallStarted).key("call:K1"));
        r.of(ChannelHop).len()
    };
    assert_eq!(at(60 * MIN), 1);
    assert_eq!(at(60 * MIN + 1), 0);
}

#[test]
fn channel_hop_needs_another_channel_an_open_case_and_a_new_conversation() {
    // Same channel: a second chat session.
    let mut r = Run::new();
    r.all(pid(1), linked_chat(0));
    r.feed(pid(1), ev("chat2", 20 * MIN, Chat, Inbound, ChatStarted).key("chat:S2"));
    r.none(ChannelHop);

    // The case was resolved first.
    let mut r = Run::new();
    r.all(pid(1), linked_chat(0));
    r.feed(pid(1), ev("resolved", 15 * MIN, Email, Internal, CaseResolved).case("C1"));
    r.feed(pid(1), ev("call", 20 * MIN, Phone, Inbound, CallStarted).key("call:K1"));
    r.none(ChannelHop);

    // An email in the same conversation (a reply in the chain) is no new conversation.
    let mut r = Run::new();
    r.feed(pid(1), ev("m1", 0, Email, Inbound, Message).key("email:<m1>"));
    r.feed(pid(1), ev("m2", MIN, Email, Outbound, Message).key("email:<m2>").parent("email:<m1>").case("C1"));
    r.feed(pid(1), ev("m3", 2 * MIN, Chat, Inbound, Message).key("email:<m3>").parent("email:<m2>").case("C1"));
    r.none(ChannelHop);

    // Another profile's open case does not count.
    let mut r = Run::new();
    r.all(pid(1), linked_chat(0));
    r.feed(pid(2), ev("call", 20 * MIN, Phone, Inbound, CallStarted).key("call:K1"));
    r.none(ChannelHop);
}

#[test]
fn channel_hop_with_a_case_id_looks_at_that_case_only() {
    let mut r = Run::new();
    r.all(pid(1), linked_chat(0));
    r.feed(pid(1), ev("other", 2 * MIN, Email, Inbound, Message).key("email:<o>").case("C9"));
    // C9 is open and contacted last, by email; the call quotes C1, last contacted on chat.
    r.feed(pid(1), ev("call", 5 * MIN, Phone, Inbound, CallStarted).key("call:K1").case("C1"));
    let i = r.one(ChannelHop);
    assert_eq!(i.case_id.as_deref(), Some("C1"));
    assert_eq!(evidence(i), ["chat-msg", "call"]);
}

// ---------------------------------------------------------------- repeat_contact

fn three_conversations(last_at: i64) -> Vec<E> {
    vec![
        ev("a", 0, Email, Inbound, Message).key("email:<a>"),
        ev("b", 2 * DAY, Email, Inbound, Message).key("email:<b>"),
        ev("c", last_at, Phone, Inbound, CallStarted).key("call:c"),
    ]
}

#[test]
fn repeat_contact_fires_on_the_third_conversation_within_seven_days() {
    let mut r = Run::new();
    r.all(pid(1), three_conversations(7 * DAY));
    let i = r.one(RepeatContact);
    assert_eq!(evidence(i), ["a", "b", "c"]);
    assert_eq!(i.recommended_channel, Phone);
    assert_eq!(i.detected_at, EventTime(T0 + 7 * DAY));
    assert_eq!(i.reason, "3rd conversation within 7 d without a case resolution");

    let mut r = Run::new();
    r.all(pid(1), three_conversations(7 * DAY + 1));
    r.none(RepeatContact);
}

#[test]
fn repeat_contact_counts_conversations_not_messages_and_stops_at_a_resolution() {
    // Three messages of one chat, then a reply in the first email chain: two conversations.
    let mut r = Run::new();
    r.feed(pid(1), ev("a", 0, Email, Inbound, Message).key("email:<a>"));
    r.feed(pid(1), ev("s1", HOUR, Chat, Inbound, ChatStarted).key("chat:S"));
    r.feed(pid(1), ev("s2", HOUR + MIN, Chat, Inbound, Message).key("chat:S"));
    r.feed(pid(1), ev("a2", 2 * HOUR, Email, Inbound, Message).key("email:<a2>").parent("email:<a>"));
    r.none(RepeatContact);

    let mut r = Run::new();
    let mut events = three_conversations(3 * DAY);
    events.insert(2, ev("done", 2 * DAY + HOUR, Email, Internal, CaseResolved).case("C1"));
    r.all(pid(1), events);
    r.none(RepeatContact);

    // The fourth within the window is not the third.
    let mut r = Run::new();
    r.all(pid(1), three_conversations(3 * DAY));
    r.feed(pid(1), ev("d", 4 * DAY, Chat, Inbound, ChatStarted).key("chat:d"));
    assert_eq!(r.of(RepeatContact).len(), 1);
}

#[test]
fn a_conversation_threaded_into_a_case_stays_one_conversation() {
    // The engine re-threads a chat once the agent links it: later messages carry case:C1 as their
    // thread. That is still the first conversation.
    let mut r = Run::new();
    r.all(pid(1), linked_chat(0));
    r.feed(pid(1), ev("chat-msg2", 5 * MIN, Chat, Inbound, Message).key("chat:S1").thread("case:C1"));
    r.feed(pid(1), ev("b", DAY, Email, Inbound, Message).key("email:<b>"));
    r.none(RepeatContact);
    r.feed(pid(1), ev("c", 2 * DAY, Email, Inbound, Message).key("email:<c>").case("C1"));
    assert_eq!(evidence(r.one(RepeatContact)), ["chat-start", "b", "c"]);
}

// ---------------------------------------------------------------- first_response_sla_breach

#[test]
fn chat_sla_breach_fires_at_the_due_time_from_the_watermark() {
    let mut r = Run::new();
    r.feed(pid(1), ev("s", 0, Chat, Inbound, ChatStarted).key("chat:S"));
    r.feed(pid(1), ev("m", 30 * SEC, Chat, Inbound, Message).key("chat:S"));
    r.wm(120 * SEC);
    r.none(FirstResponseSlaBreach);
    r.wm(120 * SEC + 1);
    let i = r.one(FirstResponseSlaBreach);
    assert_eq!(i.detected_at, EventTime(T0 + 120 * SEC));
    assert_eq!(i.priority, Priority::Critical);
    assert_eq!(i.recommended_channel, Chat);
    // The first of the thread still waiting is the key event.
    assert_eq!(evidence(i), ["s"]);
    assert_eq!(i.reason, "no response to an inbound chat CHAT_STARTED within the 2 min first-response SLA");
    assert_eq!(r.d.pending_timers(), 0);
}

#[test]
fn a_response_cancels_the_sla_timer_even_at_the_due_time() {
    let mut r = Run::new();
    r.feed(pid(1), ev("s", 0, Chat, Inbound, ChatStarted).key("chat:S"));
    r.feed(pid(1), ev("a", 120 * SEC, Chat, Outbound, Message).key("chat:S").case("C1"));
    r.wm(DAY);
    r.none(FirstResponseSlaBreach);
    assert_eq!(r.d.counters().get(FirstResponseSlaBreach).cancelled, 1);

    // One millisecond late: the timer fires before the response is applied.
    let mut r = Run::new();
    r.feed(pid(1), ev("s", 0, Chat, Inbound, ChatStarted).key("chat:S"));
    r.feed(pid(1), ev("a", 120 * SEC + 1, Chat, Outbound, Message).key("chat:S"));
    assert_eq!(r.one(FirstResponseSlaBreach).detected_at, EventTime(T0 + 120 * SEC));
}

#[test]
fn chat_and_email_have_their_own_sla() {
    // Three hours is within the email SLA.
    let mut r = Run::new();
    r.feed(pid(1), ev("m", 0, Email, Inbound, Message).key("email:<m>"));
    r.feed(pid(1), ev("re", 3 * HOUR, Email, Outbound, Message).key("email:<re>").parent("email:<m>").case("C1"));
    r.wm(DAY);
    r.none(FirstResponseSlaBreach);

    // An auto-acknowledgement (no agent) a second later settles nothing: five hours is late.
    let mut r = Run::new();
    r.feed(pid(1), ev("m", 0, Email, Inbound, Message).key("email:<m>"));
    r.feed(pid(1), ev("ack", SEC, Email, Outbound, Message).key("email:<ack>").parent("email:<m>").automated());
    r.feed(pid(1), ev("re", 5 * HOUR, Email, Outbound, Message).key("email:<re>").parent("email:<m>"));
    assert_eq!(r.one(FirstResponseSlaBreach).detected_at, EventTime(T0 + 4 * HOUR));

    // Three minutes is not within the chat SLA.
    let mut r = Run::new();
    r.feed(pid(1), ev("s", 0, Chat, Inbound, ChatStarted).key("chat:S"));
    r.feed(pid(1), ev("a", 3 * MIN, Chat, Outbound, Message).key("chat:S"));
    assert_eq!(r.one(FirstResponseSlaBreach).detected_at, EventTime(T0 + 2 * MIN));

    // An unanswered email breaches after 4 h, at high priority; so does a social post.
    let mut r = Run::new();
    r.feed(pid(1), ev("m", 0, Email, Inbound, Message).key("email:<m>"));
    r.feed(pid(2), ev("p", 0, Social, Inbound, SocialPost).key("post:1"));
    r.wm(4 * HOUR + 1);
    let breaches = r.of(FirstResponseSlaBreach);
    assert_eq!(breaches.len(), 2);
    assert!(breaches.iter().all(|i| i.priority == Priority::High && i.detected_at == EventTime(T0 + 4 * HOUR)));

    // Calls have no first-response SLA: they are answered or abandoned.
    let mut r = Run::new();
    r.feed(pid(1), ev("c", 0, Phone, Inbound, CallStarted).key("call:1"));
    r.wm(DAY);
    r.none(FirstResponseSlaBreach);
}

#[test]
fn a_response_anywhere_in_the_case_counts() {
    let mut r = Run::new();
    r.feed(pid(1), ev("m", 0, Email, Inbound, Message).key("email:<m>").case("C1"));
    r.feed(pid(1), ev("cb", HOUR, Phone, Outbound, CallAnswered).key("call:cb").case("C1"));
    r.wm(DAY);
    r.none(FirstResponseSlaBreach);

    // A response in another case does not.
    let mut r = Run::new();
    r.feed(pid(1), ev("m", 0, Email, Inbound, Message).key("email:<m>").case("C1"));
    r.feed(pid(1), ev("x", HOUR, Email, Outbound, Message).key("email:<x>").case("C2"));
    r.wm(DAY);
    assert_eq!(r.one(FirstResponseSlaBreach).case_id.as_deref(), Some("C1"));
}

#[test]
fn a_reply_to_the_waiting_message_counts_under_another_case_id() {
    let mut r = Run::new();
    r.feed(pid(1), ev("m", 0, Email, Inbound, Message).key("email:<m>").case("C1"));
    // The ticket was merged into C2: the agent answers the customer's message from there.
    r.feed(pid(1), ev("x", HOUR, Email, Outbound, Message).key("email:<x>").parent("email:<m>").case("C2"));
    r.wm(DAY);
    r.none(FirstResponseSlaBreach);
    assert_eq!(r.d.counters().get(FirstResponseSlaBreach).cancelled, 1);
}

#[test]
fn a_wait_moves_with_its_thread_into_the_case_its_ticket_was_merged_into() {
    // The customer's follow-up names C2 (the ticket was merged); the agent answers it there.
    let thread = |r: &mut Run| {
        r.feed(pid(1), ev("m1", 0, Email, Inbound, Message).key("email:<m1>").case("C1"));
        r.feed(pid(1), ev("m2", HOUR, Email, Inbound, Message).key("email:<m2>").parent("email:<m1>").case("C2"));
    };
    let mut r = Run::new();
    thread(&mut r);
    r.feed(pid(1), ev("r", 2 * HOUR, Email, Outbound, Message).key("email:<r>").parent("email:<m2>").case("C2"));
    r.wm(DAY);
    r.none(FirstResponseSlaBreach);
    // Unanswered: one breach, from the first message, not one per case id.
    let mut r = Run::new();
    thread(&mut r);
    r.wm(DAY);
    let i = r.one(FirstResponseSlaBreach);
    assert_eq!((evidence(i), i.case_id.as_deref()), (vec!["m1"], Some("C2")));
}

#[test]
fn a_customer_still_waiting_after_a_breach_does_not_breach_again() {
    let mut config = MomentsConfig { cooldown_hours: 0, ..MomentsConfig::default() };
    config.first_response_sla.chat_seconds = 60;
    let mut r = Run::with(config);
    r.feed(pid(1), ev("s", 0, Chat, Inbound, ChatStarted).key("chat:S"));
    r.feed(pid(1), ev("m1", 2 * MIN, Chat, Inbound, Message).key("chat:S"));
    r.feed(pid(1), ev("m2", 4 * MIN, Chat, Inbound, Message).key("chat:S"));
    r.wm(HOUR);
    assert_eq!(evidence(r.one(FirstResponseSlaBreach)), ["s"]);
}

#[test]
fn after_a_response_the_next_inbound_waits_again() {
    let mut r = Run::new();
    r.feed(pid(1), ev("s", 0, Chat, Inbound, ChatStarted).key("chat:S"));
    r.feed(pid(1), ev("a", MIN, Chat, Outbound, Message).key("chat:S"));
    r.feed(pid(1), ev("m", 2 * MIN, Chat, Inbound, Message).key("chat:S"));
    r.wm(HOUR);
    let i = r.one(FirstResponseSlaBreach);
    assert_eq!(evidence(i), ["m"]);
    assert_eq!(i.detected_at, EventTime(T0 + 4 * MIN));
}

#[test]
fn a_reply_answers_the_case_its_conversation_is_in_by_then_whatever_thread_it_arrived_in() {
    // An email in case C waits; a reply on chat session S, which an abandon naming C joins
    // to the case only after the reply (same time, later id), does not answer it. The engine
    // gives the reply the case's thread when the abandon arrived first: that changes nothing.
    let run = |reply_thread: &str| {
        let mut r = Run::new();
        r.feed(pid(1), ev("a-mail", 0, Email, Inbound, Message).key("email:<m1>").case("C"));
        r.feed(pid(1), ev("b-reply", 7 * MIN, Chat, Outbound, Message).key("chat:S").thread(reply_thread));
        r.feed(pid(1), ev("c-abandon", 7 * MIN, Chat, Inbound, ChatAbandoned).key("chat:S").case("C"));
        r.feed(pid(1), ev("d-chat", 7 * MIN, Chat, Inbound, ChatStarted).key("chat:S2").case("C"));
        r.wm(HOUR);
        r.of(FirstResponseSlaBreach).into_iter().map(|i| evidence(i).join(",")).collect::<Vec<_>>()
    };
    assert_eq!(run("chat:S"), run("case:C"));
    // The email still waits (its SLA is hours), so the new chat starts no wait of its own.
    assert!(run("chat:S").is_empty(), "{:?}", run("chat:S"));
}

// ---------------------------------------------------------------- negative_sentiment_after_contact

fn call_then(at: i64, e: E) -> Run {
    let mut r = Run::new();
    r.feed(pid(1), ev("ans", 0, Phone, Inbound, CallAnswered).key("call:1"));
    r.feed(pid(1), ev("end", 10 * MIN, Phone, Inbound, CallEnded).key("call:1").case("C1"));
    let mut e = e;
    e.event.time = EventTime(T0 + 10 * MIN + at);
    r.feed(pid(1), e);
    r
}

#[test]
fn negative_sentiment_within_48_hours_of_a_support_contact() {
    let neg = || ev("angry", 0, Email, Inbound, Message).key("email:<x>").sentiment(-0.8);
    let r = call_then(48 * HOUR, neg());
    let i = r.one(NegativeSentimentAfterContact);
    assert_eq!(i.priority, Priority::High);
    assert_eq!(evidence(i), ["end", "angry"]);
    assert_eq!(i.reason, "inbound sentiment -0.80 (producer score) 2880 min after a support contact on phone");
    call_then(48 * HOUR + 1, neg()).none(NegativeSentimentAfterContact);
    // Not negative enough.
    call_then(HOUR, neg().sentiment(-0.49)).none(NegativeSentimentAfterContact);
    // On the threshold.
    call_then(HOUR, neg().sentiment(-0.5)).one(NegativeSentimentAfterContact);
    // Outbound events are the brand's, not the customer's.
    let mut out = neg();
    out.event.direction = Outbound;
    call_then(HOUR, out).none(NegativeSentimentAfterContact);
}

#[test]
fn negative_sentiment_on_social_is_critical_and_text_is_scored_when_the_producer_did_not() {
    let post =
        ev("post", 0, Social, Inbound, SocialPost).key("post:1").text("This is UNACCEPTABLE, worst service ever!!!");
    let r = call_then(HOUR, post);
    let i = r.one(NegativeSentimentAfterContact);
    assert_eq!(i.priority, Priority::Critical);
    assert!(i.reason.contains("lexicon score of the text"));
    // The reason never repeats the text.
    assert!(!i.reason.to_lowercase().contains("unacceptable"));

    // A producer score wins over the text.
    let post = ev("post", 0, Social, Inbound, SocialPost).key("post:1").text("worst service ever").sentiment(0.2);
    call_then(HOUR, post).none(NegativeSentimentAfterContact);
}

#[test]
fn no_support_contact_no_negative_moment() {
    let mut r = Run::new();
    r.feed(pid(1), ev("c", 0, Phone, Inbound, CallStarted).key("call:1"));
    r.feed(pid(1), ev("angry", HOUR, Email, Inbound, Message).key("email:<x>").sentiment(-0.9));
    r.none(NegativeSentimentAfterContact);
}

// ---------------------------------------------------------------- abandoned_contact

#[test]
fn an_abandon_without_a_successful_contact_fires_after_30_minutes() {
    let mut r = Run::new();
    r.feed(pid(1), ev("ab", 0, Phone, Inbound, CallAbandoned).key("call:1").wait(4 * MIN));
    r.wm(30 * MIN);
    r.none(AbandonedContact);
    r.wm(30 * MIN + 1);
    let i = r.one(AbandonedContact);
    assert_eq!(i.detected_at, EventTime(T0 + 30 * MIN));
    assert_eq!(i.recommended_channel, Phone);
    assert_eq!(i.recommended_action, crate::Action::OfferCallback);

    // A chat abandon too; the callback channel is the phone.
    let mut r = Run::new();
    r.feed(pid(1), ev("ab", 0, Chat, Inbound, ChatAbandoned).key("chat:S"));
    r.wm(HOUR);
    assert_eq!(r.one(AbandonedContact).recommended_channel, Phone);
}

#[test]
fn an_answered_call_a_response_or_a_completed_chat_cancels_the_abandon() {
    for (kind, channel, direction) in
        [(CallAnswered, Phone, Outbound), (Message, Email, Outbound), (ChatEnded, Chat, Internal)]
    {
        let mut r = Run::new();
        r.feed(pid(1), ev("ab", 0, Phone, Inbound, CallAbandoned).key("call:1"));
        r.feed(pid(1), ev("ok", 30 * MIN, channel, direction, kind).key("other"));
        r.wm(DAY);
        r.none(AbandonedContact);
        assert_eq!(r.d.counters().get(AbandonedContact).cancelled, 1);
    }
    // Too late: the timer fires before the answer is applied.
    let mut r = Run::new();
    r.feed(pid(1), ev("ab", 0, Phone, Inbound, CallAbandoned).key("call:1"));
    r.feed(pid(1), ev("ok", 31 * MIN, Phone, Outbound, CallAnswered).key("call:2"));
    r.one(AbandonedContact);
    // A callback request is not a successful contact, nor a call answered between agents.
    for (kind, direction) in [(CallbackRequested, Inbound), (CallAnswered, Internal)] {
        let mut r = Run::new();
        r.feed(pid(1), ev("ab", 0, Phone, Inbound, CallAbandoned).key("call:1"));
        r.feed(pid(1), ev("cb", MIN, Phone, direction, kind).key("call:2"));
        r.wm(DAY);
        r.one(AbandonedContact);
    }
}

// ---------------------------------------------------------------- detractor_survey

#[test]
fn detractor_surveys() {
    let survey = |csat, nps, ces| {
        let mut r = Run::new();
        r.feed(pid(1), ev("sv", 0, Email, Inbound, SurveyResponse).case("C1").survey(csat, nps, ces));
        r.of(DetractorSurvey).len()
    };
    assert_eq!(survey(Some(2), None, None), 1);
    assert_eq!(survey(Some(3), Some(7), Some(4)), 0);
    assert_eq!(survey(None, Some(6), None), 1);
    assert_eq!(survey(None, None, Some(5)), 1);
    // Off-scale answers are ignored.
    assert_eq!(survey(Some(0), Some(11), Some(9)), 0);
    let mut r = Run::new();
    r.feed(pid(1), ev("sv", 0, Chat, Inbound, SurveyResponse).case("C1").survey(Some(1), Some(3), None));
    let i = r.one(DetractorSurvey);
    assert_eq!(i.reason, "detractor survey answer: CSAT 1, NPS 3");
    assert_eq!(i.recommended_channel, Chat);
    assert_eq!(i.case_id.as_deref(), Some("C1"));
}

// ---------------------------------------------------------------- high_effort_journey

/// Chat, then a call with a 10 min queue and 2 transfers, then an email, all in case C1.
fn effortful() -> Vec<E> {
    vec![
        ev("chat", 0, Chat, Inbound, ChatStarted).key("chat:S").case("C1"),
        ev("call", HOUR, Phone, Inbound, CallStarted).key("call:1").case("C1"),
        ev("ans", HOUR + 10 * MIN, Phone, Inbound, CallAnswered).key("call:1").case("C1").wait(10 * MIN),
        ev("end", HOUR + 20 * MIN, Phone, Inbound, CallEnded).key("call:1").case("C1").transfers(2),
        ev("mail", DAY, Email, Inbound, Message).key("email:<m>").case("C1"),
    ]
}

#[test]
fn high_effort_fires_when_the_prediction_crosses_the_threshold() {
    let mut r = Run::new();
    r.all(pid(1), effortful());
    // 1 + 2 switches + 0.75·2 + 0.05·10 + 0.5·2 = 6.0, crossing 5 at the email.
    let i = r.one(HighEffortJourney);
    assert_eq!(evidence(i), ["mail"]);
    assert_eq!(i.priority, Priority::Medium);
    assert_eq!(i.recommended_channel, Email);
    assert_eq!(
        i.reason,
        "predicted effort 6.0 of 7 before any survey answer: 3 conversations, 2 channel switches, 10 min queue wait, \
         2 transfers, 0 abandoned contacts"
    );
    // Later events keep it above the threshold: no second intervention.
    r.feed(pid(1), ev("mail2", 3 * DAY, Chat, Inbound, ChatStarted).key("chat:T").case("C1"));
    assert_eq!(r.of(HighEffortJourney).len(), 1);
    // A CES answer is compared with the prediction (7.0 after the fourth conversation, clamped).
    r.feed(pid(1), ev("sv", 4 * DAY, Email, Inbound, SurveyResponse).case("C1").survey(None, None, Some(6)));
    let a = r.d.effort_agreement();
    assert_eq!(a.count, 1);
    assert!((a.mean_absolute_error.unwrap() - 1.0).abs() < 1e-9);
    assert_eq!(a.pearson_r, None);
}

#[test]
fn no_high_effort_after_a_survey_answer_or_below_the_threshold() {
    let mut r = Run::new();
    let mut events = effortful();
    events.insert(4, ev("sv", 2 * HOUR, Email, Inbound, SurveyResponse).case("C1").survey(Some(4), None, None));
    r.all(pid(1), events);
    r.none(HighEffortJourney);

    let mut r = Run::new();
    let mut events = effortful();
    events.pop();
    r.all(pid(1), events);
    r.none(HighEffortJourney);
}

#[test]
fn abandons_add_effort() {
    let mut r = Run::new();
    r.feed(pid(1), ev("ab1", 0, Phone, Inbound, CallAbandoned).key("call:1").case("C1"));
    r.feed(pid(1), ev("ab2", MIN, Phone, Inbound, CallAbandoned).key("call:2").case("C1"));
    r.feed(pid(1), ev("ab3", 2 * MIN, Chat, Inbound, ChatAbandoned).key("chat:3").case("C1"));
    // 1 + 1 switch + 0.75·2 + 3 abandons = 6.5
    assert_eq!(evidence(r.one(HighEffortJourney)), ["ab3"]);
}

#[test]
fn effort_agreement_correlates_predictions_and_answers() {
    let mut r = Run::new();
    // Case A: one chat (effort 1), answered CES 2. Case B: the effortful journey (6.0), CES 6.
    r.feed(pid(1), ev("a", 0, Chat, Inbound, ChatStarted).key("chat:A").case("A"));
    r.feed(pid(1), ev("sa", HOUR, Chat, Inbound, SurveyResponse).case("A").survey(None, None, Some(2)));
    r.all(pid(2), effortful());
    r.feed(pid(2), ev("sb", 2 * DAY, Email, Inbound, SurveyResponse).case("C1").survey(None, None, Some(6)));
    let a = r.d.effort_agreement();
    assert_eq!(a.count, 2);
    assert!((a.mean_absolute_error.unwrap() - 0.5).abs() < 1e-9);
    assert!((a.pearson_r.unwrap() - 1.0).abs() < 1e-9);
}

// ---------------------------------------------------------------- cool-down, ids, merges, config

#[test]
fn one_intervention_per_profile_moment_and_case_within_the_cooldown() {
    let bad =
        |id: &str, t: i64, case: &str| ev(id, t, Email, Inbound, SurveyResponse).case(case).survey(Some(1), None, None);
    let mut r = Run::new();
    r.feed(pid(1), bad("s1", 0, "C1"));
    r.feed(pid(1), bad("s2", HOUR, "C1"));
    r.feed(pid(1), bad("s3", HOUR, "C2"));
    r.feed(pid(2), bad("s4", HOUR, "C1"));
    r.feed(pid(1), bad("s5", DAY, "C1"));
    let ids: Vec<&str> = r.of(DetractorSurvey).iter().map(|i| i.evidence[0].event_id.as_str()).collect();
    assert_eq!(ids, ["s1", "s3", "s4", "s5"]);
    assert_eq!(r.d.counters().get(DetractorSurvey).suppressed, 1);
    assert_eq!(r.d.counters().get(DetractorSurvey).detected, 4);
}

#[test]
fn a_merge_moves_a_pending_sla_timer_to_the_survivor() {
    let mut r = Run::new();
    r.feed(pid(2), ev("s", 0, Chat, Inbound, ChatStarted).key("chat:S"));
    r.d.merge_profiles(&Tenant::new("acme"), pid(1), pid(2));
    r.wm(HOUR);
    let i = r.one(FirstResponseSlaBreach);
    assert_eq!(i.profile_id, pid(1).to_string());
    assert_eq!(r.d.held_profiles(), 1);
}

#[test]
fn a_merge_moves_cooldowns_and_conversations_and_redirects_later_events() {
    let mut r = Run::new();
    r.feed(pid(2), ev("a", 0, Email, Inbound, Message).key("email:<a>"));
    r.feed(pid(1), ev("b", DAY, Email, Inbound, Message).key("email:<b>"));
    r.d.merge_profiles(&Tenant::new("acme"), pid(1), pid(2));
    // An event still naming the absorbed profile (it was resolved before the merge).
    r.feed(pid(2), ev("c", 2 * DAY, Phone, Inbound, CallStarted).key("call:c"));
    let i = r.one(RepeatContact);
    assert_eq!(i.profile_id, pid(1).to_string());
    assert_eq!(evidence(i), ["a", "b", "c"]);

    // A response on the survivor cancels the absorbed profile's timer in the same conversation.
    let mut r = Run::new();
    r.feed(pid(2), ev("s", 0, Chat, Inbound, ChatStarted).key("chat:S"));
    r.d.merge_profiles(&Tenant::new("acme"), pid(1), pid(2));
    r.feed(pid(1), ev("a", MIN, Chat, Outbound, Message).key("chat:S").case("C1"));
    r.wm(HOUR);
    r.none(FirstResponseSlaBreach);

    // Cool-downs move too.
    let bad = |id: &str, t: i64| ev(id, t, Email, Inbound, SurveyResponse).case("C1").survey(Some(1), None, None);
    let mut r = Run::new();
    r.feed(pid(2), bad("s1", 0));
    r.d.merge_profiles(&Tenant::new("acme"), pid(1), pid(2));
    r.feed(pid(1), bad("s2", HOUR));
    assert_eq!(r.of(DetractorSurvey).len(), 1);
}

#[test]
fn a_tenant_overrides_its_sla() {
    let config: MomentsConfig = toml::from_str("[tenants.fast.first_response_sla]\nchat_seconds = 60").unwrap();
    let mut r = Run::with(config);
    for tenant in ["acme", "fast"] {
        r.feed(pid(1), ev(&format!("s-{tenant}"), 0, Chat, Inbound, ChatStarted).key("chat:S").tenant(tenant));
        r.feed(pid(1), ev(&format!("a-{tenant}"), 90 * SEC, Chat, Outbound, Message).key("chat:S").tenant(tenant));
    }
    let i = r.one(FirstResponseSlaBreach);
    assert_eq!(i.tenant, "fast");
    assert_eq!(i.detected_at, EventTime(T0 + 60 * SEC));
    assert_eq!(r.d.tenant_counters(&Tenant::new("acme")).get(FirstResponseSlaBreach).detected, 0);
}

#[test]
fn disabled_moments_are_not_detected() {
    let config: MomentsConfig = toml::from_str("[detractor_survey]\nenabled = false").unwrap();
    let mut r = Run::with(config);
    r.feed(pid(1), ev("sv", 0, Email, Inbound, SurveyResponse).case("C1").survey(Some(1), None, None));
    r.none(DetractorSurvey);
}

#[test]
fn the_detector_refuses_a_bad_config_naming_the_key() {
    let config: MomentsConfig = toml::from_str("[tenants.acme.first_response_sla]\nchat_seconds = 0").unwrap();
    let err = Detector::new(config).unwrap_err();
    assert_eq!(err.to_string(), "moments.tenants.acme.first_response_sla.chat_seconds: must be at least 1");
}

#[test]
fn idle_profiles_are_evicted_by_event_time() {
    let mut r = Run::new();
    r.feed(pid(1), ev("a", HOUR, Email, Inbound, Message).key("email:<a>"));
    r.feed(pid(2), ev("b", 14 * DAY, Email, Inbound, Message).key("email:<b>"));
    // Idle past the 14-day retention, but the sweep runs at day boundaries (T0 is one).
    r.feed(pid(2), ev("c", 14 * DAY + 2 * HOUR, Email, Outbound, Message).key("email:<c>").parent("email:<b>"));
    assert_eq!(r.d.held_profiles(), 2);
    // The next boundary's sweep forgets what was idle at it.
    r.feed(pid(2), ev("d", 15 * DAY, Email, Inbound, Message).key("email:<d>"));
    assert_eq!(r.d.held_profiles(), 1);
    assert_eq!(r.d.counters().profiles_evicted, 1);
    // A watermark alone moves the clock too.
    r.d.advance_watermark(&Tenant::new("acme"), EventTime(T0 + 30 * DAY));
    assert_eq!(r.d.held_profiles(), 0);
    assert_eq!(r.d.counters().profiles_evicted, 2);
}

// ---------------------------------------------------------------- order and lateness

/// Sends `events` (with profiles) through a pipeline, in the given order; returns every
/// intervention, sorted, after flushing and firing every timer.
fn through_pipeline(events: &[(ProfileId, E)]) -> Vec<Intervention> {
    let mut p = MomentsPipeline::new(MomentsConfig::default()).unwrap();
    let mut out = Vec::new();
    for (profile, e) in events {
        let thread = std::sync::Arc::from(e.thread_id());
        out.extend(p.push(*profile, e.event.clone(), &thread, Vec::new()));
    }
    out.extend(p.flush());
    out.extend(p.detector_mut().advance_watermark(&Tenant::new("acme"), EventTime(i64::MAX)));
    out.sort_by(|a, b| (&a.intervention_id, a.detected_at).cmp(&(&b.intervention_id, b.detected_at)));
    out
}

#[test]
fn a_late_event_within_the_lateness_gives_the_same_result() {
    let mut events: Vec<(ProfileId, E)> = vec![
        (pid(1), ev("s", 0, Chat, Inbound, ChatStarted).key("chat:S")),
        (pid(1), ev("a", 100 * SEC, Chat, Outbound, Message).key("chat:S").case("C1")),
        (pid(1), ev("x", 150 * SEC, Email, Inbound, Message).key("email:<x>")),
        (pid(1), ev("y", 10 * MIN, Email, Outbound, Message).key("email:<y>").parent("email:<x>")),
    ];
    let in_order = through_pipeline(&events);
    // The response arrives after an event 50 s younger: within the 60 s lateness.
    events.swap(1, 2);
    let shuffled = through_pipeline(&events);
    assert_eq!(in_order, shuffled);
    assert!(in_order.iter().all(|i| i.moment_type != FirstResponseSlaBreach));
    assert_eq!(in_order.len(), 1, "{in_order:#?}");
    assert_eq!(in_order[0].moment_type, ChannelHop);
}

#[test]
fn a_response_arriving_beyond_the_lateness_is_too_late() {
    let mut p = MomentsPipeline::new(MomentsConfig::default()).unwrap();
    let s = ev("s", 0, Chat, Inbound, ChatStarted).key("chat:S");
    let later = ev("x", 5 * MIN, Email, Inbound, Message).key("email:<x>");
    let a = ev("a", 100 * SEC, Chat, Outbound, Message).key("chat:S");
    let mut out = p.push(pid(1), s.event.clone(), &s.thread_id().into(), Vec::new());
    out.extend(p.push(pid(1), later.event.clone(), &later.thread_id().into(), Vec::new()));
    // The watermark (4 min) passed the due time (2 min): the breach is out already.
    assert_eq!(out.iter().filter(|i| i.moment_type == FirstResponseSlaBreach).count(), 1);
    p.push(pid(1), a.event.clone(), &a.thread_id().into(), Vec::new());
    assert_eq!(p.buffer().late_events(), 1);
}

/// A backfill of old history into a live tenant: the old email's answer comes right behind
/// it, but the email's SLA timer was due long before the watermark and fired first. That breach
/// (and any other moment of the old events) had expired by the tenant's clock: not emitted,
/// counted as stale. A late event still within its time to live is emitted.
#[test]
fn interventions_expired_by_the_tenants_clock_are_not_emitted() {
    let mut p = MomentsPipeline::new(MomentsConfig::default()).unwrap();
    let live = ev("live", 10 * DAY, Chat, Inbound, ChatStarted).key("chat:L");
    let reply = ev("live-r", 10 * DAY + 30 * SEC, Chat, Outbound, Message).key("chat:L");
    let old = ev("old", 0, Email, Inbound, Message).key("email:<old>");
    let old_reply = ev("old-r", HOUR, Email, Outbound, Message).key("email:<old-r>").parent("email:<old>");
    let old_detractor = ev("old-s", 2 * HOUR, Email, Inbound, SurveyResponse).survey(Some(1), None, None);
    let recent_detractor =
        ev("recent-s", 10 * DAY - 3 * HOUR, Email, Inbound, SurveyResponse).survey(Some(1), None, None);
    let mut out = Vec::new();
    for e in [live, reply, old, old_reply, old_detractor, recent_detractor] {
        out.extend(p.push(pid(1), e.event.clone(), &e.thread_id().into(), Vec::new()));
    }
    assert_eq!(p.buffer().late_events(), 4);
    let found: Vec<(MomentType, &str)> = out.iter().map(|i| (i.moment_type, i.key_event_id.as_str())).collect();
    assert_eq!(found, vec![(DetractorSurvey, "recent-s")], "{out:#?}");
    let counters = p.detector().counters();
    assert_eq!(counters.get(FirstResponseSlaBreach).stale, 1);
    assert_eq!(counters.get(DetractorSurvey).stale, 1);
    assert_eq!(counters.get(DetractorSurvey).detected, 1);
    assert!(out[0].expires_at > EventTime(T0 + 10 * DAY), "actionable a day from its answer");
}

/// A conversation both merged profiles saw (a reply from one to the other's message) is one
/// conversation for repeat contacts: two conversations are not a third contact.
#[test]
fn a_conversation_seen_from_both_merged_profiles_counts_once() {
    let mut p = MomentsPipeline::new(MomentsConfig::default()).unwrap();
    let m1 = ev("m1", 0, Email, Inbound, Message).key("email:<m1>");
    let m2 = ev("m2", HOUR, Email, Inbound, Message).key("email:<m2>").parent("email:<m1>").thread("email:<m1>");
    let m3 = ev("m3", 2 * HOUR, Email, Inbound, Message).key("email:<m3>");
    let mut out = Vec::new();
    for (profile, e) in [(pid(1), m1), (pid(2), m2), (pid(1), m3)] {
        out.extend(p.push(profile, e.event.clone(), &e.thread_id().into(), Vec::new()));
    }
    // The event that joins them.
    let later = ev("later", 3 * HOUR, Chat, Internal, ChatEnded).key("chat:Z");
    out.extend(p.push(pid(1), later.event.clone(), &later.thread_id().into(), vec![(pid(1), pid(2))]));
    out.extend(p.flush());
    assert!(out.iter().all(|i| i.moment_type != RepeatContact), "{out:#?}");
}

/// A late detection still within its time to live is held back by the cool-down of one it
/// follows, even when the clock has moved past that one's cool-down meanwhile.
#[test]
fn a_late_detection_is_held_back_by_the_cool_down() {
    let mut p = MomentsPipeline::new(MomentsConfig::default()).unwrap();
    let s1 = ev("s1", 0, Chat, Inbound, SurveyResponse).case("C-1").survey(Some(1), None, None);
    let other = ev("x", 24 * HOUR + 30 * MIN, Chat, Inbound, Message).key("chat:X");
    let s2 = ev("s2", HOUR, Chat, Inbound, SurveyResponse).case("C-1").survey(Some(1), None, None);
    let mut out = Vec::new();
    for (profile, e) in [(pid(1), s1), (pid(2), other), (pid(1), s2)] {
        out.extend(p.push(profile, e.event.clone(), &e.thread_id().into(), Vec::new()));
    }
    let detractors: Vec<&str> =
        out.iter().filter(|i| i.moment_type == DetractorSurvey).map(|i| i.key_event_id.as_str()).collect();
    assert_eq!(detractors, ["s1"], "{out:#?}");
    assert_eq!(p.detector().counters().get(DetractorSurvey).suppressed, 1);
}

/// Only late events make stale moments: an email in order, then days of quiet (no clock
/// advance), then the tenant's next event lets its breach fire, expired but emitted as before
/// (what an event in order makes never depends on arrival order within the lateness).
#[test]
fn a_breach_in_order_fired_after_a_long_quiet_is_emitted() {
    let mut p = MomentsPipeline::new(MomentsConfig::default()).unwrap();
    let mail = ev("friday", 0, Email, Inbound, Message).key("email:<f>");
    let monday = ev("monday", 3 * DAY, Chat, Inbound, ChatStarted).key("chat:M");
    let mut out = p.push(pid(1), mail.event.clone(), &mail.thread_id().into(), Vec::new());
    out.extend(p.push(pid(2), monday.event.clone(), &monday.thread_id().into(), Vec::new()));
    assert_eq!(out.len(), 1, "{out:#?}");
    assert_eq!((out[0].moment_type, out[0].key_event_id.as_str()), (FirstResponseSlaBreach, "friday"));
    assert_eq!(p.detector().counters().get(FirstResponseSlaBreach).stale, 0);
}

/// Random traffic of three profiles over a few hours, in event-time order.
fn traffic() -> impl Strategy<Value = Vec<(ProfileId, E)>> {
    let kinds = prop_oneof![
        Just((Chat, Inbound, ChatStarted)),
        Just((Chat, Inbound, Message)),
        Just((Chat, Outbound, Message)),
        Just((Chat, Inbound, ChatAbandoned)),
        Just((Chat, Internal, ChatEnded)),
        Just((Email, Inbound, Message)),
        Just((Email, Outbound, Message)),
        Just((Phone, Inbound, CallStarted)),
        Just((Phone, Inbound, CallAnswered)),
        Just((Phone, Inbound, CallEnded)),
        Just((Phone, Inbound, CallAbandoned)),
        Just((Social, Inbound, SocialPost)),
        Just((Social, Outbound, SocialReply)),
        Just((Email, Internal, CaseResolved)),
        Just((Email, Inbound, SurveyResponse)),
    ];
    let one = (
        0u8..3,
        // Bursts within a few minutes (reordered by the jitter) and spread over hours.
        prop_oneof![0i64..300, 0i64..6 * 3600],
        kinds,
        prop::option::of(0u8..2),
        0u8..4,
        prop::option::of(-1.0f64..1.0),
        1i32..8,
        0i64..20,
    );
    prop::collection::vec(one, 1..60).prop_map(|raw| {
        let mut events: Vec<(ProfileId, E)> = raw
            .into_iter()
            .enumerate()
            .map(|(n, (p, secs, (channel, direction, kind), case, key, sentiment, score, wait))| {
                let mut e = ev(&format!("e{n:03}"), secs * SEC, channel, direction, kind)
                    .key(&format!("{channel}:{p}:{key}"))
                    .wait(wait * MIN);
                if let Some(c) = case {
                    e = e.case(&format!("C{p}{c}"));
                }
                if let Some(s) = sentiment {
                    e = e.sentiment(s);
                }
                if kind == SurveyResponse {
                    e = e.survey(Some(score.min(5)), Some(score), Some(score));
                }
                (pid(p), e)
            })
            .collect();
        events.sort_by(|a, b| (a.1.event.time, &a.1.event.event_id).cmp(&(b.1.event.time, &b.1.event.event_id)));
        events
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Arrival order within the allowed lateness changes nothing: every event arrives before
    /// any event more than the lateness younger, so none is late and the buffer restores order.
    #[test]
    fn shuffling_within_the_lateness_changes_nothing(
        events in traffic(),
        jitter in prop::collection::vec(0i64..60_000, 60),
    ) {
        let in_order = through_pipeline(&events);
        let mut arrival: Vec<(i64, usize)> = events
            .iter()
            .enumerate()
            .map(|(i, (_, e))| (e.event.time.0 + jitter[i % jitter.len()], i))
            .collect();
        arrival.sort();
        let shuffled: Vec<(ProfileId, E)> = arrival.iter().map(|&(_, i)| events[i].clone()).collect();
        let got = through_pipeline(&shuffled);
        let key = |v: &[Intervention]| -> BTreeSet<(String, MomentType)> {
            v.iter().map(|i| (i.intervention_id.clone(), i.moment_type)).collect()
        };
        prop_assert_eq!(key(&in_order), key(&got));
        prop_assert_eq!(in_order, got);
    }

    /// Any event, however odd, is taken without a panic.
    #[test]
    fn no_event_panics_the_detector(
        events in traffic(),
        times in prop::collection::vec(any::<i64>(), 60),
        texts in prop::collection::vec(".{0,40}", 60),
    ) {
        let mut d = Detector::new(MomentsConfig::default()).unwrap();
        for (i, (p, mut e)) in events.into_iter().enumerate() {
            e.event.time = EventTime(times[i % times.len()]);
            e.event.text = Some(texts[i % texts.len()].clone().into());
            e.event.sentiment = e.event.sentiment.map(|s| if i % 7 == 0 { f64::NAN } else { s * 10.0 });
            e.event.details.queue_wait_ms = Some(times[(i + 1) % times.len()]);
            e.event.details.transfers = Some(i32::MAX);
            let thread = e.thread_id();
            d.observe(p, &e.event, &thread);
            if i % 5 == 0 {
                d.merge_profiles(&Tenant::new("acme"), pid(0), p);
            }
        }
        d.advance_watermark(&Tenant::new("acme"), EventTime(i64::MAX));
        // Only timers due at the end of time itself can still wait.
        prop_assert!(d.pending_timers() <= 60);
    }
}

// ---------------------------------------------------------------- the Avro contract

const SCHEMA: &str = include_str!("../../../schemas/intervention.avsc");

fn sample() -> Intervention {
    let mut r = Run::new();
    r.all(pid(1), linked_chat(0));
    r.feed(pid(1), ev("call", 40 * MIN, Phone, Inbound, CallStarted).key("call:K1"));
    r.one(ChannelHop).clone()
}

#[test]
fn interventions_round_trip_through_the_avro_schema() {
    use apache_avro::reader::datum::GenericDatumReader;
    use apache_avro::writer::datum::GenericDatumWriter;
    use apache_avro::Schema;

    let schema = Schema::parse_str(SCHEMA).unwrap();
    let writer = GenericDatumWriter::builder(&schema).build().unwrap();
    let reader = GenericDatumReader::builder(&schema).build().unwrap();
    let mut without_case = sample();
    without_case.case_id = None;
    without_case.evidence.clear();
    without_case.priority = Priority::Unknown;
    for record in [sample(), without_case] {
        let bytes = writer.write_ser_to_vec(&record).unwrap();
        let back: Intervention = reader.read_deser(&mut bytes.as_slice()).unwrap();
        assert_eq!(back, record);
    }
}

#[test]
fn the_schema_names_every_rust_symbol_and_defaults_every_optional_field() {
    let schema: serde_json::Value = serde_json::from_str(SCHEMA).unwrap();
    assert_eq!(schema["namespace"], "io.omnistitch.cx.v1");
    let fields = schema["fields"].as_array().unwrap();
    let names: Vec<&str> = fields.iter().filter_map(|f| f["name"].as_str()).collect();
    let json = serde_json::to_value(sample()).unwrap();
    let mut rust: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
    rust.sort_unstable();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, rust);
    let symbols = |name: &str| -> Vec<String> {
        let f = fields.iter().find(|f| f["name"] == name).unwrap();
        f["type"]["symbols"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
    };
    let moments = symbols("moment_type");
    assert_eq!(moments[0], "UNKNOWN");
    for m in MomentType::ALL {
        assert!(moments.contains(&m.as_str().to_string()));
        let action = serde_json::to_value(m.action()).unwrap();
        assert!(symbols("recommended_action").iter().any(|s| action == s.as_str()));
    }
    for f in fields {
        if f["type"].as_array().is_some_and(|u| u[0] == "null") {
            assert!(f.get("default").is_some_and(|d| d.is_null()), "{}", f["name"]);
        }
    }
}

#[test]
fn interventions_name_their_key_event() {
    let i = sample();
    assert_eq!(i.key_event_id, "call");
    assert_eq!(i.intervention_id, Intervention::derive_id("acme", ChannelHop, "call"));
}

#[test]
fn a_reply_in_the_same_thread_settles_the_wait_even_on_another_profile() {
    // A mail from a team mailbox links no one: the customer's mail and the agent's reply land on
    // two profiles, but the engine threads the reply into the mail's thread.
    let mut r = Run::new();
    r.feed(pid(1), ev("in", 0, Email, Inbound, Message).key("email:<m1>"));
    r.feed(
        pid(2),
        ev("re", HOUR, Email, Outbound, Message).key("email:<m2>").parent("email:<m1>").thread("email:<m1>"),
    );
    r.wm(DAY);
    r.none(FirstResponseSlaBreach);
    assert_eq!(r.d.pending_timers(), 0);
    // A reply in another thread settles nothing.
    r.feed(pid(1), ev("in2", DAY, Email, Inbound, Message).key("email:<m3>"));
    r.feed(pid(2), ev("re2", DAY + HOUR, Email, Outbound, Message).key("email:<m4>"));
    r.wm(2 * DAY);
    assert_eq!(evidence(r.one(FirstResponseSlaBreach)), ["in2"]);
}

#[test]
fn a_reply_on_another_profile_to_a_follow_up_or_naming_the_case_answers_the_wait() {
    // The customer writes again while waiting; a shared mailbox answers the follow-up.
    let mut r = Run::new();
    r.feed(pid(1), ev("in", 0, Email, Inbound, Message).key("email:<m1>"));
    r.feed(pid(1), ev("again", 10 * MIN, Email, Inbound, Message).key("email:<m2>").parent("email:<m1>"));
    r.feed(pid(2), ev("re", HOUR, Email, Outbound, Message).key("email:<r>").parent("email:<m2>").thread("email:<m1>"));
    r.wm(DAY);
    r.none(FirstResponseSlaBreach);
    // A chat an agent files under case C is answered by a mail naming C, from another profile.
    let mut r = Run::new();
    r.feed(pid(1), ev("chat", 0, Chat, Inbound, ChatStarted).key("chat:S"));
    r.feed(pid(1), ev("filed", 30 * SEC, Chat, Internal, CaseOpened).key("chat:S").case("C"));
    r.feed(pid(2), ev("mail", 90 * SEC, Email, Outbound, Message).key("email:<x>").case("C"));
    r.wm(HOUR);
    r.none(FirstResponseSlaBreach);
}

/// A negative message that arrives behind the clock, within its time to live, still finds the
/// support contact before it: the profile's state is not pruned by the clock alone.
#[test]
fn a_late_negative_message_still_finds_the_contact_before_it() {
    let mut r = Run::new();
    r.feed(pid(1), ev("call", 0, Phone, Inbound, CallEnded).key("call:c"));
    // Other customers move the tenant's clock past the 48 h window after the call.
    r.feed(pid(2), ev("other", 48 * HOUR + 2 * MIN, Chat, Inbound, ChatStarted).key("chat:o"));
    r.feed(pid(1), ev("angry", 47 * HOUR + 59 * MIN, Email, Inbound, Message).key("email:<a>").sentiment(-0.9));
    assert_eq!(r.one(NegativeSentimentAfterContact).key_event_id, "angry");
}

/// Two waits of one case made one (a thread absorbed into the case, or a ticket merged): a
/// reply from another profile to the message whose wait was dropped answers the one kept.
#[test]
fn a_reply_to_a_message_whose_wait_joined_another_answers_the_case() {
    // A thread absorbed into case C, which had a later wait of its own.
    let mut r = Run::new();
    r.feed(pid(1), ev("m1", 0, Email, Inbound, Message).key("email:<m1>"));
    r.feed(pid(1), ev("m2", 5 * MIN, Email, Inbound, Message).key("email:<m2>").case("C"));
    r.feed(pid(1), ev("n", 6 * MIN, Email, Internal, CaseOpened).key("email:<m1>").case("C"));
    r.feed(pid(2), ev("re", HOUR, Email, Outbound, Message).key("email:<r>").parent("email:<m2>"));
    r.wm(DAY);
    r.none(FirstResponseSlaBreach);
    assert_eq!(r.d.pending_timers(), 0);
    // Case C1's conversation moves to C2 (a ticket merge): C1's wait joins C2's.
    let mut r = Run::new();
    r.feed(pid(1), ev("a", 0, Email, Inbound, Message).key("email:<a>").case("C2"));
    r.feed(pid(1), ev("b", 5 * MIN, Email, Inbound, Message).key("email:<b>").case("C1"));
    r.feed(pid(1), ev("move", 6 * MIN, Email, Internal, CaseOpened).key("email:<b>").case("C2"));
    r.feed(pid(2), ev("re", HOUR, Email, Outbound, Message).key("email:<r>").parent("email:<b>"));
    r.wm(DAY);
    r.none(FirstResponseSlaBreach);
    // Two profiles waiting in one case, merged: a reply to the later message answers the case.
    let mut r = Run::new();
    r.feed(pid(1), ev("x", 0, Email, Inbound, Message).key("email:<x>").case("C"));
    r.feed(pid(3), ev("y", 5 * MIN, Email, Inbound, Message).key("email:<y>").case("C"));
    r.d.merge_profiles(&Tenant::new("acme"), pid(1), pid(3));
    r.feed(pid(2), ev("re", HOUR, Email, Outbound, Message).key("email:<r>").parent("email:<y>"));
    r.wm(DAY);
    r.none(FirstResponseSlaBreach);
}

/// A breached wait joined to an earlier one still pending (two profiles merged, both waiting
/// in one case): a reply to the breached message answers the pending one, whether the merge
/// came before or after the breach.
#[test]
fn a_reply_to_a_breached_message_answers_the_wait_it_joined() {
    for merge_at in [90 * SEC, 10 * MIN] {
        let mut r = Run::new();
        r.feed(pid(3), ev("e", 0, Email, Inbound, Message).key("email:<e>").case("C"));
        r.feed(pid(1), ev("m", MIN, Chat, Inbound, ChatStarted).key("chat:m").case("C"));
        r.wm(merge_at);
        r.out.extend(r.d.merge_profiles(&Tenant::new("acme"), pid(1), pid(3)));
        r.feed(pid(2), ev("re", 20 * MIN, Chat, Outbound, Message).key("chat:m"));
        // e's wait is answered (its breach would be held back by m's cool-down: looked at
        // directly).
        assert_eq!(r.d.pending_timers(), 0, "merged at {merge_at} ms");
        r.wm(DAY);
        let keys: Vec<&str> = r.of(FirstResponseSlaBreach).iter().map(|i| i.key_event_id.as_str()).collect();
        let expected: &[&str] = if merge_at > 3 * MIN { &["m"] } else { &[] };
        assert_eq!(keys, expected, "merged at {merge_at} ms");
    }
}

/// Word of a breached wait expires (30 days after it was due): the wait is forgotten, and the
/// case's next message is timed again, even for a customer who kept the case alive meanwhile.
#[test]
fn a_breached_wait_is_forgotten_once_its_word_expires() {
    let mut r = Run::new();
    r.feed(pid(1), ev("m1", 0, Email, Inbound, Message).key("email:<m1>").case("C"));
    for (n, day) in [10, 20, 29].into_iter().enumerate() {
        r.feed(
            pid(1),
            ev(&format!("f{n}"), day * DAY, Email, Inbound, Message).key(&format!("email:<f{n}>")).case("C"),
        );
    }
    r.feed(pid(1), ev("m2", 31 * DAY, Email, Inbound, Message).key("email:<m2>").case("C"));
    r.wm(32 * DAY);
    let keys: Vec<&str> = r.of(FirstResponseSlaBreach).iter().map(|i| i.key_event_id.as_str()).collect();
    assert_eq!(keys, ["m1", "m2"]);
}

/// A case whose wait breached is forgotten at the retention like any other (its word does not
/// keep it): the customer's message in it weeks later is timed.
#[test]
fn a_breached_case_is_forgotten_at_the_retention() {
    let mut r = Run::new();
    r.feed(pid(1), ev("m1", 0, Email, Inbound, Message).key("email:<m1>").case("C"));
    // Another case keeps the profile itself from eviction.
    r.feed(pid(1), ev("d", 13 * DAY, Chat, Inbound, ChatStarted).key("chat:d").case("D"));
    r.feed(pid(1), ev("d-re", 13 * DAY + MIN, Chat, Outbound, Message).key("chat:d").case("D"));
    r.feed(pid(1), ev("m2", 16 * DAY, Email, Inbound, Message).key("email:<m2>").case("C"));
    r.wm(17 * DAY);
    let keys: Vec<&str> = r.of(FirstResponseSlaBreach).iter().map(|i| i.key_event_id.as_str()).collect();
    assert_eq!(keys, ["m1", "m2"]);
    // Word of m1's wait went with its case: only m2's is held.
    assert_eq!(r.d.timer_entries(), 1);
}

/// Waits joined one into the next, nine times over (threads of one customer filed under one
/// case in turn): a reply to the first message still answers the one wait kept.
#[test]
fn a_long_chain_of_joined_waits_is_followed() {
    let mut r = Run::new();
    for n in (1..=9).rev() {
        r.feed(pid(1), ev(&format!("m{n}"), (9 - n) * MIN, Email, Inbound, Message).key(&format!("email:<m{n}>")));
    }
    for n in 1..=9 {
        r.feed(
            pid(1),
            ev(&format!("open{n}"), 10 * MIN + n * SEC, Email, Internal, CaseOpened)
                .key(&format!("email:<m{n}>"))
                .case("C"),
        );
    }
    r.feed(pid(2), ev("re", HOUR, Email, Outbound, Message).key("email:<r>").parent("email:<m1>"));
    r.wm(DAY);
    r.none(FirstResponseSlaBreach);
}

/// A wait that breached is still ended by a response from another profile (a shared mailbox)
/// naming its case or its message: the customer's next message then starts a wait of its own.
#[test]
fn a_breached_wait_is_ended_by_a_response_from_another_profile() {
    for reply in [
        ev("re", 5 * HOUR, Email, Outbound, Message).key("email:<r>").case("C"),
        ev("re", 5 * HOUR, Email, Outbound, Message).key("email:<r>").parent("email:<m1>"),
    ] {
        let mut r = Run::new();
        r.feed(pid(1), ev("m1", 0, Email, Inbound, Message).key("email:<m1>").case("C"));
        r.wm(5 * HOUR);
        assert_eq!(r.one(FirstResponseSlaBreach).key_event_id, "m1");
        r.feed(pid(2), reply);
        r.feed(pid(1), ev("m2", 2 * DAY, Email, Inbound, Message).key("email:<m2>").case("C"));
        r.wm(3 * DAY);
        let keys: Vec<&str> = r.of(FirstResponseSlaBreach).iter().map(|i| i.key_event_id.as_str()).collect();
        assert_eq!(keys, ["m1", "m2"]);
    }
    // Unanswered, the follow-up is the same wait: no second breach.
    let mut r = Run::new();
    r.feed(pid(1), ev("m1", 0, Email, Inbound, Message).key("email:<m1>").case("C"));
    r.wm(5 * HOUR);
    r.feed(pid(1), ev("m2", 2 * DAY, Email, Inbound, Message).key("email:<m2>").case("C"));
    r.wm(3 * DAY);
    assert_eq!(r.one(FirstResponseSlaBreach).key_event_id, "m1");
    assert_eq!(r.d.pending_timers(), 0, "word of a breached wait is no pending timer");
}

#[test]
fn a_merge_that_joins_a_burst_of_conversations_reveals_the_repeat_contact() {
    // Three conversations of one customer, seen as two profiles until identity links them.
    let mut r = Run::new();
    r.feed(pid(2), ev("a", 0, Email, Inbound, Message).key("email:<a>"));
    r.feed(pid(1), ev("b", DAY, Chat, Inbound, ChatStarted).key("chat:B"));
    r.feed(pid(2), ev("c", 2 * DAY, Phone, Inbound, CallStarted).key("call:c"));
    // Identity links them three days later.
    r.wm(5 * DAY);
    r.none(RepeatContact);
    let found = r.d.merge_profiles(&Tenant::new("acme"), pid(1), pid(2));
    assert_eq!(found.len(), 1);
    let i = &found[0];
    assert_eq!((i.moment_type, i.key_event_id.as_str()), (RepeatContact, "c"));
    assert_eq!(i.detected_at, EventTime(T0 + 2 * DAY));
    assert!(i.expires_at > EventTime(T0 + 5 * DAY), "found now, not already expired: {:?}", i.expires_at);
    assert_eq!(i.profile_id, pid(1).to_string());
    assert_eq!(i.intervention_id, Intervention::derive_id("acme", RepeatContact, "c"));
    // Joined by an event days later: actionable from that event's time, not already expired
    // by it.
    let mut r = Run::new();
    r.feed(pid(2), ev("a", 0, Email, Inbound, Message).key("email:<a>"));
    r.feed(pid(1), ev("b", DAY, Chat, Inbound, ChatStarted).key("chat:B"));
    r.feed(pid(2), ev("c", 2 * DAY, Phone, Inbound, CallStarted).key("call:c"));
    let joining = ev("j", 9 * DAY, Email, Internal, CaseOpened);
    let found: Vec<Intervention> =
        r.d.observe_merging(pid(1), &joining.event, &joining.thread_id(), &[(pid(1), pid(2))])
            .into_iter()
            .filter(|i| i.moment_type == RepeatContact)
            .collect();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].expires_at, EventTime(T0 + 10 * DAY), "a day from the joining event");
    // A window made of one side's conversations only was that side's to detect: nothing new.
    let mut r = Run::new();
    for (id, t) in [("a", 0), ("b", DAY), ("c", 2 * DAY)] {
        r.feed(pid(2), ev(id, t, Email, Inbound, Message).key(&format!("email:<{id}>")));
    }
    assert_eq!(r.one(RepeatContact).key_event_id, "c");
    r.feed(pid(1), ev("z", 30 * DAY, Chat, Inbound, ChatStarted).key("chat:Z"));
    assert!(r.d.merge_profiles(&Tenant::new("acme"), pid(1), pid(2)).is_empty());
}

/// Two profiles of one customer: an abandoned call on one, an answered call on the other ten
/// minutes later; the merge that shows they are one customer comes before the abandon's
/// window ends: the abandon was rescued, either way round.
#[test]
fn a_successful_contact_on_a_merged_profile_rescues_an_abandon() {
    for (abandoned, answered) in [(pid(1), pid(2)), (pid(2), pid(1))] {
        let mut r = Run::new();
        r.feed(abandoned, ev("ab", 0, Phone, Inbound, CallAbandoned).key("call:K1"));
        r.feed(answered, ev("ok", 10 * MIN, Chat, Outbound, Message).key("chat:S"));
        r.wm(20 * MIN);
        assert!(r.d.merge_profiles(&Tenant::new("acme"), pid(1), pid(2)).is_empty());
        r.wm(DAY);
        r.none(AbandonedContact);
        assert_eq!(r.d.counters().get(AbandonedContact).cancelled, 1);
    }
    // A contact before the abandon rescues nothing.
    let mut r = Run::new();
    r.feed(pid(2), ev("ok", 0, Chat, Outbound, Message).key("chat:S"));
    r.feed(pid(1), ev("ab", 10 * MIN, Phone, Inbound, CallAbandoned).key("call:K1"));
    r.wm(20 * MIN);
    r.d.merge_profiles(&Tenant::new("acme"), pid(1), pid(2));
    r.wm(DAY);
    r.one(AbandonedContact);
}

#[test]
fn a_callback_to_the_same_number_rescues_an_abandon_on_another_profile() {
    // A landline links no one: the abandoned call and the answered callback are two profiles.
    let with_phone = |e: E, n: &str| {
        let mut e = e;
        e.event.identifiers.push(omnistitch_model::RawIdentifier::new(omnistitch_model::IdentifierKind::Phone, n));
        e
    };
    let mut r = Run::new();
    r.feed(pid(1), with_phone(ev("ab", 0, Phone, Inbound, CallAbandoned).key("call:K1"), "(415) 555-0134"));
    r.feed(pid(2), with_phone(ev("cb", 10 * MIN, Phone, Outbound, CallAnswered).key("call:K2"), "+1 415 555 0134"));
    r.wm(DAY);
    r.none(AbandonedContact);
    // Another number rescues nothing; nor does a placeholder shared by many callers.
    let mut r = Run::new();
    r.feed(pid(1), with_phone(ev("ab", 0, Phone, Inbound, CallAbandoned).key("call:K1"), "0000000000"));
    r.feed(pid(2), with_phone(ev("cb", 10 * MIN, Phone, Outbound, CallAnswered).key("call:K2"), "000-000-0000"));
    r.feed(pid(3), with_phone(ev("ab2", 0, Phone, Inbound, CallAbandoned).key("call:K3"), "4155550199"));
    r.feed(pid(4), with_phone(ev("cb2", 10 * MIN, Phone, Outbound, CallAnswered).key("call:K4"), "4155550134"));
    r.wm(DAY);
    let keys: Vec<String> =
        r.out.iter().filter(|i| i.moment_type == AbandonedContact).map(|i| i.key_event_id.clone()).collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
}

/// Event times at the ends of the clock are odd but not fatal: no overflow (a debug build
/// panics on one), and the detector goes on.
#[test]
fn times_at_the_ends_of_the_clock_do_not_overflow() {
    let mut r = Run::new();
    for t in [i64::MIN, i64::MIN + 1, i64::MAX - 1, i64::MAX] {
        let mut e = ev(&format!("e{t}"), 0, Chat, Inbound, Message).key("chat:S");
        e.event.time = EventTime(t);
        r.feed(pid(1), e);
        r.wm(0);
    }
    let tenant = Tenant::new("acme");
    let _ = r.d.advance_watermark(&tenant, EventTime(i64::MIN));
    let _ = r.d.advance_watermark(&tenant, EventTime(i64::MAX));
}

/// A wait that a merge moves into a case (its conversation was under a case id on the other
/// profile) is answered by a reply naming that case alone, from any profile, as when one
/// profile sees the case id arrive.
#[test]
fn a_wait_a_merge_moves_into_a_case_is_answered_by_a_reply_naming_the_case() {
    for merged in [false, true] {
        let mut r = Run::new();
        let first = if merged { pid(2) } else { pid(1) };
        r.feed(first, ev("m1", 0, Chat, Inbound, Message).key("chat:S"));
        r.feed(pid(1), ev("n", MIN, Chat, Internal, Message).key("chat:S").case("c1"));
        if merged {
            let found = r.d.merge_profiles(&Tenant::new("acme"), pid(1), pid(2));
            r.out.extend(found);
        }
        // The agent answers from the case, on a profile of its own (a shared mailbox).
        r.feed(pid(3), ev("a", 2 * MIN, Chat, Outbound, Message).key("chat:other").case("c1"));
        r.wm(HOUR);
        r.none(FirstResponseSlaBreach);
    }
}

/// A conversation threaded on its own on one profile and under a case id on another is one
/// conversation once the profiles merge: its own thread's case (cool-downs, waits) joins the
/// case, as when one profile sees the case id arrive. So a breach already acted on in the
/// conversation is not raised again for the case within the cool-down.
#[test]
fn a_merge_joins_a_conversation_s_own_thread_to_its_case() {
    let breaches = |merged: bool| {
        let mut r = Run::new();
        let first = if merged { pid(2) } else { pid(1) };
        r.feed(first, ev("m1", 0, Chat, Inbound, Message).key("chat:S"));
        r.wm(10 * MIN);
        r.feed(pid(1), ev("m2", 11 * MIN, Chat, Inbound, Message).key("chat:S").case("c1"));
        if merged {
            let found = r.d.merge_profiles(&Tenant::new("acme"), pid(1), pid(2));
            r.out.extend(found);
        }
        r.wm(HOUR);
        r.out.iter().filter(|i| i.moment_type == FirstResponseSlaBreach).count()
    };
    assert_eq!(breaches(false), 1, "one profile: the case took the thread's cool-down");
    assert_eq!(breaches(true), 1, "two profiles merged: the same");
}
