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
    Topic { name: "damaged item", phrase: "the damaged item I received" },
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
    "@{brand} {x} is a mess, anyone there?",
    "@{brand} three days and still no answer on {x}",
    "@{brand} quick question about {x}",
];

pub(crate) const REVIEWS: &[&str] =
    &["Two stars. Support took ages with {x}.", "Decent product, but {x} was painful.", "Sorted {x} quickly, happy."];

pub(crate) const SURVEY_COMMENTS: &[&str] =
    &["Took too long.", "Agent was friendly.", "Had to repeat myself.", "Quick and easy.", "Still not fixed."];

/// `template` with `{x}` replaced by the topic phrase and `{brand}` by the tenant.
pub(crate) fn fill(template: &str, topic: Topic, brand: &str) -> String {
    template.replace("{x}", topic.phrase).replace("{brand}", brand)
}
