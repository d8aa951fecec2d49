//! Lexicon sentiment of free text, for events whose producer gave no score.
//!
//! A small rule-based scorer in the manner of VADER (Hutto & Gilbert, 2014), with its own
//! lexicon tuned to customer-service text (words like "please" and "help", positive in general
//! lexicons, are neutral here: "please help, nothing works" is not a happy message):
//!
//! - each word or emoji of the lexicon carries a valence from −4 to 4; a few two-word phrases
//!   ("fed up", "no answer", "took ages") carry their own;
//! - intensifiers ("very", "extremely") within the three words before a valenced word push it
//!   away from zero by 0.293 (less for the farther ones), dampeners ("slightly") towards it;
//! - a negation ("not", "never", "don't", "nothing") within those three words scales it by
//!   −0.74, so "not great" is mildly negative rather than the opposite of great;
//! - a word in capitals among lower-case text gets 0.733 more emphasis;
//! - after "but", words weigh 1.5 times, before it half;
//! - exclamation marks (up to 4) add 0.292 each and question marks (up to 3) 0.18 each to the
//!   magnitude of the sum;
//! - the sum `s` is normalized to `s / sqrt(s² + 15)`, from −1 to 1; text with no valenced word
//!   scores 0.
//!
//! Deterministic, allocation-free (words are lower-cased into a small buffer), one pass over the
//! text with one table probe per word, and total: any text, however long or strange, gives a
//! finite score.

/// Valence of words, sorted by word (so that a duplicate shows; looked up by hash).
const LEXICON: &[(&str, f64)] = &[
    ("abandoned", -1.9),
    ("abysmal", -3.1),
    ("aggravated", -2.5),
    ("aggravating", -2.5),
    ("amazing", 2.8),
    ("angrily", -2.2),
    ("angry", -2.3),
    ("annoyance", -1.6),
    ("annoyed", -1.6),
    ("annoying", -1.8),
    ("appalled", -2.5),
    ("appalling", -2.8),
    ("appreciate", 2.0),
    ("appreciated", 2.1),
    ("atrocious", -3.1),
    ("awesome", 3.1),
    ("awful", -2.8),
    ("bad", -2.5),
    ("badly", -2.1),
    ("best", 3.2),
    ("better", 1.9),
    ("brilliant", 2.8),
    ("broke", -1.8),
    ("broken", -2.1),
    ("buggy", -1.8),
    ("careless", -1.8),
    ("chaos", -2.0),
    ("clueless", -1.8),
    ("complain", -1.5),
    ("complained", -1.5),
    ("complaint", -1.5),
    ("confused", -1.3),
    ("confusing", -1.3),
    ("cool", 1.3),
    ("crap", -2.5),
    ("crappy", -2.6),
    ("damaged", -1.8),
    ("delay", -1.3),
    ("delayed", -1.3),
    ("delays", -1.3),
    ("disappointed", -2.1),
    ("disappointing", -2.2),
    ("disappointment", -2.3),
    ("disaster", -3.1),
    ("disastrous", -3.0),
    ("disgrace", -2.6),
    ("disgraceful", -2.9),
    ("disgusted", -2.7),
    ("disgusting", -2.9),
    ("dismal", -2.2),
    ("dissatisfied", -2.0),
    ("dreadful", -2.8),
    ("easy", 1.9),
    ("efficient", 1.8),
    ("error", -1.2),
    ("excellent", 2.7),
    ("fail", -2.3),
    ("failed", -2.3),
    ("failing", -2.3),
    ("fails", -2.3),
    ("failure", -2.3),
    ("fantastic", 2.6),
    ("fast", 1.0),
    ("fault", -1.6),
    ("faulty", -1.9),
    ("fine", 0.8),
    ("fixed", 1.2),
    ("friendly", 2.2),
    ("frustrated", -2.2),
    ("frustrating", -2.2),
    ("frustration", -2.1),
    ("fuming", -2.5),
    ("furious", -2.9),
    ("garbage", -2.3),
    ("glad", 2.0),
    ("good", 1.9),
    ("grateful", 2.0),
    ("great", 3.1),
    ("happy", 2.7),
    ("hassle", -1.7),
    ("hate", -2.7),
    ("hated", -2.6),
    ("headache", -1.6),
    ("helpful", 1.9),
    ("hopeless", -2.4),
    ("horrendous", -3.0),
    ("horrible", -2.9),
    ("horrid", -2.6),
    ("ignored", -1.8),
    ("ignoring", -1.6),
    ("impossible", -1.5),
    ("impressed", 2.2),
    ("inadequate", -1.8),
    ("incompetence", -2.5),
    ("incompetent", -2.5),
    ("inconvenience", -1.5),
    ("infuriating", -2.9),
    ("insulting", -2.3),
    ("irritated", -1.9),
    ("irritating", -2.0),
    ("lied", -2.3),
    ("lies", -2.0),
    ("livid", -2.9),
    ("lost", -1.3),
    ("lousy", -2.4),
    ("love", 3.2),
    ("loved", 2.9),
    ("lovely", 2.8),
    ("mess", -2.0),
    ("messed", -1.8),
    ("miserable", -2.5),
    ("mistake", -1.4),
    ("nice", 1.8),
    ("nightmare", -2.7),
    ("ok", 1.2),
    ("okay", 1.2),
    ("outrage", -2.8),
    ("outraged", -2.8),
    ("outrageous", -2.6),
    ("outstanding", 3.0),
    ("overcharged", -2.0),
    ("painful", -1.9),
    ("pathetic", -2.7),
    ("perfect", 2.7),
    ("pleasant", 2.3),
    ("pleased", 1.9),
    ("poor", -2.1),
    ("poorly", -2.0),
    ("problem", -1.7),
    ("problems", -1.7),
    ("professional", 1.5),
    ("quick", 1.0),
    ("quickly", 0.9),
    ("recommend", 1.5),
    ("reliable", 1.6),
    ("relieved", 1.5),
    ("resolved", 1.0),
    ("ridiculous", -2.1),
    ("rubbish", -2.0),
    ("rude", -2.2),
    ("sad", -2.1),
    ("satisfied", 1.8),
    ("scam", -2.6),
    ("shameful", -2.5),
    ("shocking", -1.8),
    ("shoddy", -2.2),
    ("sloppy", -1.8),
    ("slow", -1.2),
    ("smooth", 1.2),
    ("solved", 1.3),
    ("sorry", -0.3),
    ("sorted", 1.0),
    ("stuck", -1.5),
    ("stupid", -2.4),
    ("suck", -1.8),
    ("sucks", -1.8),
    ("superb", 3.1),
    ("terrible", -2.9),
    ("thank", 1.5),
    ("thankful", 2.0),
    ("thanks", 1.9),
    ("trouble", -1.7),
    ("ugh", -1.8),
    ("unacceptable", -2.8),
    ("unhappy", -2.0),
    ("unhelpful", -2.0),
    ("unprofessional", -2.2),
    ("unreliable", -1.9),
    ("unresolved", -1.6),
    ("upset", -1.6),
    ("useless", -2.3),
    ("waste", -1.8),
    ("wasted", -1.9),
    ("wonderful", 2.7),
    ("work", 1.0),
    ("working", 1.0),
    ("works", 1.0),
    ("worse", -2.1),
    ("worst", -3.1),
    ("wrong", -2.1),
    ("yay", 2.4),
];

/// Two-word phrases with a valence of their own (checked before single words).
const PHRASES: &[(&str, &str, f64)] = &[
    ("fed", "up", -2.2),
    ("let", "down", -1.8),
    ("no", "answer", -1.8),
    ("no", "reply", -1.8),
    ("no", "response", -1.8),
    ("rip", "off", -2.4),
    ("still", "waiting", -1.6),
    ("too", "long", -1.6),
    ("took", "ages", -1.8),
];

/// Emoji and their valence.
const EMOJI: &[(char, f64)] = &[
    ('☹', -1.8),
    ('❤', 2.6),
    ('🎉', 2.2),
    ('👍', 1.8),
    ('👎', -2.0),
    ('😀', 2.0),
    ('😃', 2.2),
    ('😊', 2.0),
    ('😞', -2.0),
    ('😠', -2.5),
    ('😡', -2.8),
    ('😢', -2.2),
    ('😤', -2.0),
    ('😭', -2.4),
    ('🙁', -1.8),
    ('🙂', 1.4),
];

/// Words that push the next valenced word away from zero.
const BOOSTERS: &[&str] = &[
    "absolutely",
    "completely",
    "deeply",
    "especially",
    "extremely",
    "highly",
    "incredibly",
    "really",
    "seriously",
    "so",
    "super",
    "terribly",
    "totally",
    "truly",
    "utterly",
    "very",
];

/// Words that pull the next valenced word towards zero.
const DAMPENERS: &[&str] = &["barely", "bit", "hardly", "kinda", "marginally", "partly", "slightly", "somewhat"];

/// Negations (apostrophes are dropped before lookup: "don't" is "dont").
const NEGATIONS: &[&str] = &[
    "aint", "arent", "cannot", "cant", "couldnt", "didnt", "doesnt", "dont", "hadnt", "hasnt", "havent", "isnt",
    "neither", "never", "no", "nobody", "none", "nor", "not", "nothing", "nowhere", "shouldnt", "wasnt", "werent",
    "without", "wont", "wouldnt",
];

const BOOST: f64 = 0.293;
const CAPS_BOOST: f64 = 0.733;
const NEGATION_SCALAR: f64 = -0.74;
const EXCLAMATION_BOOST: f64 = 0.292;
const MAX_EXCLAMATIONS: usize = 4;
const QUESTION_BOOST: f64 = 0.18;
const MAX_QUESTIONS: usize = 3;
const ALPHA: f64 = 15.0;
/// Words looked at per text; a longer text is scored on its beginning.
const MAX_WORDS: usize = 2_000;

/// Bytes of a lower-cased word kept for lookups: more than the longest word of the tables (a
/// longer word matches none of them).
const WORD_BYTES: usize = 24;

/// What a word does to the score; every word of the tables is looked up once, by one probe.
#[derive(Debug, Clone, Copy, Default)]
struct Class {
    /// Its lexicon valence.
    valence: Option<f64>,
    /// What it does to the valenced word after it.
    modifier: Modifier,
    /// Some phrase starts with it.
    starts_phrase: bool,
    /// It is "but".
    but: bool,
}

/// What a word does to the valenced words up to three after it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Modifier {
    #[default]
    None,
    Booster,
    Dampener,
    Negation,
}

/// A word (lower case, no apostrophes) or an emoji.
#[derive(Debug, Clone, Copy)]
struct Token {
    /// The word's first `WORD_BYTES` bytes (whole characters).
    bytes: [u8; WORD_BYTES],
    /// Bytes of the word; more than `WORD_BYTES` for a word too long to look up.
    len: usize,
    /// Written in capitals (two letters or more).
    caps: bool,
    emoji: Option<f64>,
    /// What the word is to the scorer (nothing for an emoji).
    class: Class,
    /// A sentence ended (`.`, `!`, `?`) between the token before and this one: what came
    /// before does not modify it.
    sentence_start: bool,
}

impl Token {
    const EMPTY: Token =
        Token { bytes: [0; WORD_BYTES], len: 0, caps: false, emoji: None, class: Class::NONE, sentence_start: false };

    /// The word's UTF-8 bytes (none for an emoji); a word too long for the tables reads as
    /// "\0", which none holds. Bytes compare as the text does.
    fn word(&self) -> &[u8] {
        if self.len > WORD_BYTES {
            return b"\0";
        }
        &self.bytes[..self.len]
    }

    fn push(&mut self, c: char) {
        if c.is_ascii() {
            if self.len < WORD_BYTES {
                self.bytes[self.len] = c as u8;
            }
            self.len += 1;
            return;
        }
        let n = c.len_utf8();
        if self.len + n <= WORD_BYTES {
            c.encode_utf8(&mut self.bytes[self.len..]);
        }
        self.len += n;
    }
}

impl Class {
    const NONE: Class = Class { valence: None, modifier: Modifier::None, starts_phrase: false, but: false };
}

/// Calls `each` with the tokens of `text`, classified, in order, the first `MAX_WORDS` of them.
fn tokens(text: &str, mut each: impl FnMut(&Token)) {
    let mut count = 0usize;
    let mut emit = |t: &mut Token| {
        if count < MAX_WORDS {
            count += 1;
            if t.emoji.is_none() {
                t.class = WORDS.get(t.word()).copied().unwrap_or(Class::NONE);
            }
            each(t);
        }
    };
    let mut word = Token::EMPTY;
    let (mut letters, mut upper) = (0usize, 0usize);
    // A sentence ended since the last token emitted.
    let mut ended = false;
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            if c.is_ascii_alphabetic() {
                letters += 1;
                upper += usize::from(c.is_ascii_uppercase());
            }
            word.push(c.to_ascii_lowercase());
        } else if c.is_alphanumeric() {
            if c.is_alphabetic() {
                letters += 1;
                upper += usize::from(c.is_uppercase());
            }
            for l in c.to_lowercase() {
                word.push(l);
            }
        } else if c == '\'' || c == '’' {
            // "don't" reads as "dont"
        } else {
            if word.len > 0 {
                word.caps = letters >= 2 && upper == letters;
                word.sentence_start = std::mem::take(&mut ended);
                emit(&mut word);
            }
            (word, letters, upper) = (Token::EMPTY, 0, 0);
            if let Some(v) = emoji(c) {
                emit(&mut Token { emoji: Some(v), sentence_start: std::mem::take(&mut ended), ..Token::EMPTY });
            }
            ended |= matches!(c, '.' | '!' | '?');
        }
    }
    if word.len > 0 {
        word.caps = letters >= 2 && upper == letters;
        word.sentence_start = ended;
        emit(&mut word);
    }
}

fn emoji(c: char) -> Option<f64> {
    EMOJI.binary_search_by(|(e, _)| e.cmp(&c)).ok().map(|i| EMOJI[i].1)
}

/// Every word of the tables with what it is to the scorer.
static WORDS: std::sync::LazyLock<hashbrown::HashMap<&'static [u8], Class>> = std::sync::LazyLock::new(|| {
    let mut words: hashbrown::HashMap<&'static [u8], Class> = hashbrown::HashMap::new();
    for (w, v) in LEXICON {
        words.entry(w.as_bytes()).or_default().valence = Some(*v);
    }
    for (list, modifier) in
        [(BOOSTERS, Modifier::Booster), (DAMPENERS, Modifier::Dampener), (NEGATIONS, Modifier::Negation)]
    {
        for w in list {
            words.entry(w.as_bytes()).or_default().modifier = modifier;
        }
    }
    for (first, _, _) in PHRASES {
        words.entry(first.as_bytes()).or_default().starts_phrase = true;
    }
    words.entry(b"but").or_default().but = true;
    words
});

#[cfg(test)]
fn lexicon(word: &[u8]) -> Option<f64> {
    WORDS.get(word).and_then(|c| c.valence)
}

fn phrase(first: &Token, second: &Token) -> Option<f64> {
    if !first.class.starts_phrase {
        return None;
    }
    let (first, second) = (first.word(), second.word());
    PHRASES.iter().find(|(a, b, _)| a.as_bytes() == first && b.as_bytes() == second).map(|p| p.2)
}

/// Moves `v` away from zero by `by` (towards it when `by` is negative).
fn emphasize(v: f64, by: f64) -> f64 {
    if v > 0.0 {
        v + by
    } else {
        v - by
    }
}

/// A token as the words after it see it.
#[derive(Debug, Clone, Copy)]
struct Before {
    modifier: Modifier,
    caps: bool,
}

/// The valence of token `t` with what its three predecessors (`before[0]` the nearest) do to
/// it, or `None` when it carries none; and whether it took the next token with it (a phrase).
/// `mixed_case`: the text mixes words in capitals with others.
fn valence(t: &Token, next: Option<&Token>, before: &[Option<Before>; 3], mixed_case: bool) -> Option<(f64, bool)> {
    let (valence, phrase_of_two) = match (t.emoji, next.and_then(|n| phrase(t, n))) {
        (Some(v), _) => (v, false),
        (None, Some(v)) => (v, true),
        (None, None) => (t.class.valence?, false),
    };
    let mut v = valence;
    if t.caps && mixed_case {
        v = emphasize(v, CAPS_BOOST);
    }
    let mut negated = false;
    for (before, decay) in before.iter().zip([1.0, 0.95, 0.9]) {
        let Some(before) = before else { break };
        match before.modifier {
            Modifier::Booster => {
                let caps = if before.caps && mixed_case { CAPS_BOOST } else { 0.0 };
                v = emphasize(v, (BOOST + caps) * decay);
            }
            Modifier::Dampener => v = emphasize(v, -BOOST * decay),
            Modifier::Negation => negated = true,
            Modifier::None => {}
        }
    }
    // A word negates words, not a face: "nothing arrived 😡" is angry.
    if negated && t.emoji.is_none() {
        v *= NEGATION_SCALAR;
    }
    Some((v, phrase_of_two))
}

/// The running sum of valences under one hypothesis about the whole text (whether it mixes
/// case), in token order: as if no "but" comes, and as if one comes later (words before it
/// weigh half). Each adds in the order the tokens come, so the sum is the one a second pass
/// that knew the answer would add up, to the last bit.
#[derive(Debug, Clone, Copy, Default)]
struct Sum {
    total: f64,
    halved: f64,
}

/// The sentiment of `text`, from −1 (negative) to 1 (positive); 0 when no word carries one.
///
/// One pass over the text: what only its end tells (whether it mixes case, whether a "but"
/// comes) is carried as hypotheses, and the valence of a word (itself rare) worked out under each.
pub fn score(text: &str) -> f64 {
    // [case not mixed, case mixed]
    let mut sums = [Sum::default(); 2];
    let (mut caps, mut plain, mut but_seen) = (false, false, false);
    // Token `i` is scored once token `i + 1` (a phrase's second word) is known.
    let mut before: [Option<Before>; 3] = [None; 3];
    let mut current: Option<Token> = None;
    let mut skip = false;
    let mut step = |next: Option<&Token>| {
        if let Some(t) = current.take() {
            // Words of an earlier sentence modify nothing of this one.
            if t.sentence_start {
                before = [None; 3];
            }
            if std::mem::take(&mut skip) {
                // The second word of a phrase: counted with the first.
            } else {
                let capitals = t.caps || before.iter().flatten().any(|b| b.caps);
                let unmixed = valence(&t, next, &before, false);
                let mixed = if capitals { valence(&t, next, &before, true) } else { unmixed };
                for (sum, v) in sums.iter_mut().zip([unmixed, mixed]) {
                    let Some((v, phrase_of_two)) = v else { continue };
                    if but_seen {
                        sum.total += v * 1.5;
                    } else {
                        sum.halved += v * 0.5;
                        sum.total += v;
                    }
                    skip = phrase_of_two;
                }
            }
            if t.class.but && !but_seen {
                but_seen = true;
                for sum in &mut sums {
                    sum.total = sum.halved;
                }
            }
            before = [Some(Before { modifier: t.class.modifier, caps: t.caps }), before[0], before[1]];
        }
        if let Some(n) = next {
            caps |= n.caps;
            plain |= n.emoji.is_none() && !n.caps;
        }
        current = next.copied();
    };
    tokens(text, |t| step(Some(t)));
    step(None);
    let sum = sums[usize::from(caps && plain)].total;
    if sum == 0.0 {
        return 0.0;
    }
    // '!' and '?' are single bytes that no other character's encoding contains.
    let exclamations = text.bytes().filter(|&c| c == b'!').take(MAX_EXCLAMATIONS).count();
    let questions = text.bytes().filter(|&c| c == b'?').take(MAX_QUESTIONS).count();
    let punctuation = exclamations as f64 * EXCLAMATION_BOOST + questions as f64 * QUESTION_BOOST;
    let sum = emphasize(sum, punctuation);
    (sum / (sum * sum + ALPHA).sqrt()).clamp(-1.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_sorted_and_unique() {
        assert!(LEXICON.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(EMOJI.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(LEXICON.iter().all(|(_, v)| (-4.0..=4.0).contains(v)));
        assert!(EMOJI.iter().all(|(_, v)| (-4.0..=4.0).contains(v)));
        for w in BOOSTERS.iter().chain(DAMPENERS).chain(NEGATIONS) {
            assert_eq!(lexicon(w.as_bytes()), None, "{w} is both a modifier and a lexicon word");
        }
        // "but" carries no valence of its own (the one-pass sum would weigh it as a word before
        // itself), and no phrase holds it.
        assert_eq!(lexicon(b"but"), None);
        assert!(PHRASES.iter().all(|(a, b, _)| *a != "but" && *b != "but"));
        assert!(!BOOSTERS.iter().chain(DAMPENERS).chain(NEGATIONS).any(|w| *w == "but"));
    }

    #[test]
    fn neutral_text_scores_zero() {
        assert_eq!(score(""), 0.0);
        assert_eq!(score("Hi, I need help with my last invoice."), 0.0);
        assert_eq!(score("This is the second time I am contacting you about my refund."), 0.0);
        assert_eq!(score("   \n\t!!! ???"), 0.0);
    }

    #[test]
    fn polarity_follows_the_words() {
        assert!(score("This is terrible, the worst service ever!!!") <= -0.7);
        assert!(score("Absolutely unacceptable. I am furious.") <= -0.7);
        assert!(score("Thanks, that was quick and easy, great agent") >= 0.7);
        assert!(score("I am fed up with this") < -0.4);
        assert!(score("😡😡") < -0.5);
    }

    /// A negation turns words, not faces, and stops at the end of its sentence.
    #[test]
    fn negation_spares_emoji_and_ends_with_the_sentence() {
        assert!(score("nothing arrived 😡😡😡") < -0.5, "{}", score("nothing arrived 😡😡😡"));
        assert!(score("I can't log in. 😡😡") < -0.5);
        assert!(score("It did not work. Great.") > 0.0, "the second sentence is not negated");
        assert!(score("It is not great") < 0.0, "within a sentence it still negates");
    }

    #[test]
    fn negation_flips_and_damps() {
        let good = score("the agent was good");
        let not_good = score("the agent was not good");
        assert!(good > 0.0 && not_good < 0.0);
        assert!(not_good.abs() < good.abs());
        assert!(score("no problem at all") > 0.0);
        assert!(score("it still doesn't work") < 0.0);
        assert!(score("Nothing works") < 0.0);
        // The negation reaches three words back, not four.
        assert!(score("not that I care, good") > 0.0);
    }

    #[test]
    fn intensifiers_capitals_and_exclamations_add_weight() {
        let bad = score("the service is bad");
        assert!(score("the service is very bad") < bad);
        assert!(score("the service is slightly bad") > bad);
        assert!(score("the service is BAD") < bad);
        assert!(score("the service is bad!!") < bad);
        // All capitals is shouting everywhere, so no word stands out.
        assert_eq!(score("THE SERVICE IS BAD"), bad);
    }

    #[test]
    fn but_shifts_weight_to_what_follows() {
        assert!(score("Thanks, but it is still broken") < 0.0);
        assert!(score("It was broken, but the agent was great") > 0.0);
    }

    #[test]
    fn what_only_the_end_of_a_text_tells_weighs_the_words_before_it() {
        // Mixed case: "VERY" boosts "bad" by 0.293 + 0.733 and, three words on, "fine" by 0.9
        // of that; before "but" half weight, after it 1.5: -3.526 / 2 + 1.7234 * 1.5 = 0.8221.
        let s = 0.8221 / (0.8221f64 * 0.8221 + 15.0).sqrt();
        assert!((score("VERY bad, but fine") - s).abs() < 1e-4, "{}", score("VERY bad, but fine"));
        // All capitals: no capitals boost, so -2.793 / 2 + 1.0637 * 1.5 = 0.19905.
        let s = 0.19905 / (0.19905f64 * 0.19905 + 15.0).sqrt();
        assert!((score("VERY BAD BUT FINE") - s).abs() < 1e-4, "{}", score("VERY BAD BUT FINE"));
        // Only the first "but" splits the text.
        assert_eq!(score("bad but fine but bad"), score("bad but fine, bad"));
    }

    proptest::proptest! {
        /// Total and bounded on any text, and the same text always scores the same.
        #[test]
        fn any_generated_text_scores_in_range(text in "(\\PC| |!|\\?|'|[A-Z]{2,6}|but|not|very|bad|good|😡){0,60}") {
            let s = score(&text);
            proptest::prop_assert!(s.is_finite() && (-1.0..=1.0).contains(&s), "{:?}: {}", text, s);
            proptest::prop_assert_eq!(s.to_bits(), score(&text).to_bits());
        }
    }

    #[test]
    fn any_text_gives_a_finite_score_in_range() {
        let long = "terrible ".repeat(100_000);
        for t in [long.as_str(), "\u{0}\u{ffff}", "n't n't n't", "'''", "but but but", "ÉNORME problème"] {
            let s = score(t);
            assert!(s.is_finite() && (-1.0..=1.0).contains(&s), "{t:.20}: {s}");
        }
    }
}
