//! Word lists and message templates: enough variety to look like traffic, nothing more.

pub(crate) const FIRST_NAMES: &[&str] = &[
    "Jo", "Sam", "Alex", "Maria", "Li", "Priya", "Omar", "Chloe", "Lucas", "Amara", "Noah", "Emma", "Diego", "Fatima",
    "Hannah", "Kenji", "Olivia", "Mateo", "Aisha", "Ben", "Sofia", "Ivan", "Grace", "Yusuf", "Nina", "Leo", "Zara",
    "Tom", "Mei", "Carlos", "Ruth", "Arjun", "Elena", "Kofi", "Julia", "Max", "Ines", "Raj", "Lena", "Theo",
];

pub(crate) const LAST_NAMES: &[&str] = &[
    "Smith", "Garcia", "Chen", "Patel", "Nguyen", "Kim", "Müller", "Rossi", "Okafor", "Silva", "Johnson", "Brown",
    "Khan", "Novak", "Dubois", "Tanaka", "Larsen", "Costa", "Ali", "Cohen", "Murphy", "Schmidt", "Lopez", "Ivanova",
    "Haddad", "Walker", "Young", "Singh", "Rahman", "Fischer", "Moreau", "Sato",
];

/// Domains of personal mailboxes.
pub(crate) const MAIL_DOMAINS: &[&str] = &["mail.example", "inbox.example", "post.example", "webmail.example"];

/// Employers, for work addresses and team mailboxes (never a tenant's own domain).
pub(crate) const COMPANIES: &[&str] = &[
    "hooli",
    "vandelay",
    "initrode",
    "soylent",
    "umbrella",
    "wayne",
    "stark",
    "cyberdyne",
    "tyrell",
    "wonka",
    "dunder",
    "prestige",
    "massive",
    "oscorp",
    "gringotts",
    "pawnee",
];

/// Roles of shared team mailboxes.
pub(crate) const TEAM_ROLES: &[&str] = &["ops", "accounts", "office", "purchasing", "admin", "it", "frontdesk"];

/// Social platforms, with the chance a person has a handle there.
pub(crate) const PLATFORMS: &[(&str, f64)] = &[("x", 0.30), ("instagram", 0.22), ("facebook", 0.18)];

/// US area codes the simulated numbers use (all valid for libphonenumber).
pub(crate) const AREA_CODES: &[&str] = &[
    "201", "202", "206", "212", "213", "303", "305", "312", "314", "404", "415", "503", "512", "602", "617", "646",
    "702", "713", "718", "773", "808", "818", "917", "919",
];

/// Placeholders people type into a chat form's email field.
pub(crate) const JUNK_EMAILS: &[&str] =
    &["n/a", "none", "test@test.com", "customer@example.com", "noreply@mail.example", "null", "test", "N/A"];

/// Placeholders people type into a chat form's phone field.
pub(crate) const JUNK_PHONES: &[&str] = &["0000000000", "1234567890", "n/a", "none", "unknown", "NULL"];

/// The caller id of a withheld number.
pub(crate) const WITHHELD: &str = "unknown";

/// What a case is about: a short name and a noun phrase for sentences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Topic {
    pub(crate) name: &'static str,
    pub(crate) phrase: &'static str,
}

pub(crate) const TOPICS: &[Topic] = &[
    Topic { name: "billing", phrase: "my last invoice" },
    Topic { name: "delivery", phrase: "the delivery of my order" },
    Topic { name: "login", phrase: "logging into my account" },
    Topic { name: "refund", phrase: "my refund" },
    Topic { name: "replacement", phrase: "a replacement for my order" },
    Topic { name: "subscription", phrase: "my subscription plan" },
    Topic { name: "app crash", phrase: "the app crashing on start" },
    Topic { name: "address change", phrase: "changing my delivery address" },
];

pub(crate) const OPENINGS: &[&str] = &[
    "Hi, I need help with {x}.",
    "Hello, there is a problem with {x}.",
    "Can someone look into {x}? It is urgent.",
    "I have a question about {x}.",
    "Nothing works with {x}, please help.",
];

pub(crate) const FOLLOW_UPS: &[&str] = &[
    "Any update on {x}?",
    "I am still waiting to hear back about {x}.",
    "This is the second time I am contacting you about {x}.",
    "Following up on {x}, nobody got back to me.",
];

/// What customers say further into a conversation.
pub(crate) const REPLIES: &[&str] = &[
    "Thanks.",
    "Yes, that is right.",
    "It still shows an error.",
    "One moment please.",
    "Thanks, but {x} is still not sorted.",
    "I already sent you those details.",
];

pub(crate) const AGENT_REPLIES: &[&str] = &[
    "Thanks for reaching out about {x}. We are looking into it.",
    "Sorry for the trouble with {x}; I have updated your case.",
    "I can help with {x}. Could you confirm a few details?",
    "We have escalated {x} to the right team.",
    "Good news: {x} should be fixed now.",
];

pub(crate) const POSTS: &[&str] = &[
    "@{brand} {x} is still not sorted, anyone there?",
    "@{brand} three days and nobody got back to me about {x}",
    "@{brand} quick question about {x}",
];

pub(crate) const REVIEWS: &[&str] =
    &["Three stars. Support was slow with {x}.", "Decent product, but {x} took a while.", "Sorted {x} quickly, happy."];

pub(crate) const SURVEY_COMMENTS: &[&str] =
    &["Took too long.", "Agent was friendly.", "Had to repeat myself.", "Quick and easy.", "Still not fixed."];

/// What angry customers write in a message or direct message: negative to any lexicon scorer.
pub(crate) const NEGATIVE_MESSAGES: &[&str] = &[
    "This is terrible, worst service ever, I am furious.",
    "Absolutely unacceptable. I am fed up with {x}.",
    "Horrible experience with {x}. I am so angry right now!",
    "Worst support I have ever had, and {x} is a complete disaster.",
    "I am furious: {x} is an awful mess and a waste of my time.",
];

/// Angry public posts.
pub(crate) const NEGATIVE_POSTS: &[&str] = &[
    "@{brand} worst service ever. {x} is a disaster, I am furious.",
    "@{brand} absolutely terrible support with {x}. Fed up!",
];

/// Angry reviews.
pub(crate) const NEGATIVE_REVIEWS: &[&str] =
    &["One star. Terrible support, {x} was a nightmare.", "Awful. The worst customer service I have ever dealt with."];

/// Angry survey comments.
pub(crate) const NEGATIVE_SURVEY_COMMENTS: &[&str] =
    &["Terrible service, still broken.", "Awful experience, the worst.", "Horrible. I am fed up with you."];

/// `template` with `{x}` replaced by the topic phrase and `{brand}` by the tenant.
pub(crate) fn fill(template: &str, topic: Topic, brand: &str) -> String {
    template.replace("{x}", topic.phrase).replace("{brand}", brand)
}

/// Every angry template.
const NEGATIVE: [&[&str]; 4] = [NEGATIVE_MESSAGES, NEGATIVE_POSTS, NEGATIVE_REVIEWS, NEGATIVE_SURVEY_COMMENTS];

/// Whether `text` was written angry: one of the angry templates, filled with a topic and any
/// brand. This is how the truth reads a text that came without a producer's sentiment: by how
/// it was made, not by the detector's scorer (which a test holds to these labels).
pub(crate) fn written_negative(text: &str) -> bool {
    NEGATIVE.iter().flat_map(|l| l.iter()).any(|t| fills(t, text))
}

/// Whether `text` is `template` filled: `{x}` by a topic's phrase, `{brand}` by any word.
fn fills(template: &str, text: &str) -> bool {
    let Some((literal, rest)) = next_hole(template) else { return template == text };
    let Some(after) = text.strip_prefix(literal) else { return false };
    match rest {
        Hole::Topic(rest) => TOPICS.iter().any(|t| after.strip_prefix(t.phrase).is_some_and(|a| fills(rest, a))),
        Hole::Brand(rest) => (1..=after.len())
            .filter(|&n| after.is_char_boundary(n))
            .take_while(|&n| !after[..n].contains(char::is_whitespace))
            .any(|n| fills(rest, &after[n..])),
    }
}

/// A template's next placeholder.
enum Hole<'a> {
    /// `{x}`, then the rest of the template.
    Topic(&'a str),
    /// `{brand}`, then the rest of the template.
    Brand(&'a str),
}

/// The literal text before `template`'s first placeholder, and the placeholder.
fn next_hole(template: &str) -> Option<(&str, Hole<'_>)> {
    let at = template.find('{')?;
    let (literal, hole) = template.split_at(at);
    if let Some(rest) = hole.strip_prefix("{x}") {
        Some((literal, Hole::Topic(rest)))
    } else {
        hole.strip_prefix("{brand}").map(|rest| (literal, Hole::Brand(rest)))
    }
}

/// The detector's lexicon score of `text`, −1..1 (tests hold it to the texts' labels).
#[cfg(test)]
fn lexicon_sentiment(text: &str) -> f64 {
    omnistitch_moments::sentiment::score(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(list: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        for t in list {
            for topic in TOPICS {
                out.push(fill(t, *topic, "acme"));
            }
        }
        out
    }

    /// Customers' texts are either plainly negative or far from the threshold, so that the
    /// truth (which knows how each was written) and any VADER-like scorer (the detector's)
    /// classify them alike.
    #[test]
    fn texts_stay_clear_of_the_negative_threshold() {
        for text in NEGATIVE.iter().flat_map(|l| filled(l)) {
            assert!(written_negative(&text), "{text}");
            assert!(lexicon_sentiment(&text) <= -0.75, "{text}: {}", lexicon_sentiment(&text));
        }
        let plain = [OPENINGS, FOLLOW_UPS, REPLIES, POSTS, REVIEWS, SURVEY_COMMENTS];
        for text in plain.iter().flat_map(|l| filled(l)) {
            assert!(!written_negative(&text), "{text}");
            assert!(lexicon_sentiment(&text) >= -0.42, "{text}: {}", lexicon_sentiment(&text));
        }
        for topic in TOPICS {
            for prefix in ["Call summary: ", "Case opened: ", "Case resolved: "] {
                assert!(lexicon_sentiment(&format!("{prefix}{}", topic.name)) > -0.3);
            }
        }
    }

    #[test]
    fn angry_templates_are_recognised_filled_and_only_then() {
        assert!(written_negative("@globex-eu worst service ever. my refund is a disaster, I am furious."));
        assert!(
            !written_negative("@globex eu worst service ever. my refund is a disaster, I am furious."),
            "a brand is one word"
        );
        assert!(!written_negative("Absolutely unacceptable. I am fed up with my cat."), "not a topic");
        assert!(!written_negative("Absolutely unacceptable. I am fed up with my refund"), "the whole text");
        assert!(written_negative("Awful. The worst customer service I have ever dealt with."));
    }

    #[test]
    fn lexicon_reads_negation_boosters_and_but() {
        assert_eq!(lexicon_sentiment("Hi, I need help with my refund."), 0.0);
        assert!(lexicon_sentiment("This is terrible, worst service ever, I am furious") < -0.9);
        assert!(lexicon_sentiment("not good") < 0.0 && lexicon_sentiment("good") > 0.0);
        assert!(lexicon_sentiment("very bad") < lexicon_sentiment("bad"));
        assert!(lexicon_sentiment("Thanks, but it is still broken") < 0.0);
        assert!(lexicon_sentiment("bad!!") < lexicon_sentiment("bad"));
    }
}
