//! Identifier normalization: one canonical value per identifier, or a reason why not.

use dashmap::DashMap;
use omnistitch_model::{CompactString, Identifier, IdentifierKind, RawIdentifier};
use phonenumber::country::Id as Region;
use thiserror::Error;

/// Why a raw identifier has no canonical form. Values are never included: they are PII.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum NormalizeError {
    /// Empty after trimming.
    #[error("empty value")]
    Empty,
    /// Not a plausible email address.
    #[error("not a valid email address")]
    InvalidEmail,
    /// Not a valid phone number for its country (or the default region).
    #[error("not a valid phone number")]
    InvalidPhone,
    /// Not a `platform:handle` pair with a usable handle.
    #[error("not a valid social handle")]
    InvalidHandle,
    /// Contains whitespace or control characters where none may be.
    #[error("contains whitespace or control characters")]
    BadCharacters,
}

impl NormalizeError {
    /// Stable code for metrics.
    pub fn code(self) -> &'static str {
        match self {
            NormalizeError::Empty => "empty",
            NormalizeError::InvalidEmail => "invalid_email",
            NormalizeError::InvalidPhone => "invalid_phone",
            NormalizeError::InvalidHandle => "invalid_handle",
            NormalizeError::BadCharacters => "bad_characters",
        }
    }
}

/// Most phone parses remembered; real traffic repeats numbers, and a parse costs about 5 µs.
const PHONE_CACHE_CAPACITY: usize = 200_000;

/// Compiled libphonenumber patterns kept (the library keeps 100); a pattern is compiled on
/// first use only, so the bound matters only for traffic from many regions.
const PHONE_REGEX_CACHE_CAPACITY: usize = 1_024;

/// How numbers are dialled from the default region: the region, and its international call
/// prefix (`00` in most of the world, `011` in North America, `0011` in Australia, `010` in
/// Japan...) from libphonenumber's metadata, anchored at the start of the digits.
struct Dialing {
    region: Region,
    idd: Option<regex::Regex>,
}

impl Dialing {
    fn new(region: Region) -> Self {
        let idd = phonenumber::metadata::DATABASE
            .by_id(region.as_ref())
            .and_then(|m| m.international_prefix())
            .and_then(|re| regex::Regex::new(&format!("^(?:{})", re.as_str())).ok());
        Dialing { region, idd }
    }

    /// How many leading digits of `digits` (ASCII digits only) are an international call
    /// prefix: the region's own, else `00` (written by callers from most of the world). As in
    /// libphonenumber, a prefix followed by `0` is not one (no country code starts with 0).
    fn international_prefix_len(&self, digits: &str) -> Option<usize> {
        let own = self.idd.as_ref().and_then(|re| re.find(digits)).map(|m| m.end());
        let len = own.filter(|&n| n > 0).or_else(|| digits.starts_with("00").then_some(2))?;
        (digits.len() > len && !digits[len..].starts_with('0')).then_some(len)
    }
}

/// Turns raw identifiers into canonical ones. Shared by all partitions of a process (`Sync`).
pub struct Normalizer {
    dialing: Dialing,
    phone_cache: DashMap<u128, Result<CompactString, NormalizeError>, hashbrown::DefaultHashBuilder>,
}

impl std::fmt::Debug for Normalizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Normalizer").field("region", &self.dialing.region).finish_non_exhaustive()
    }
}

/// Social platforms known under several names.
fn canonical_platform(p: &str) -> String {
    let p = p.trim().to_ascii_lowercase();
    match p.as_str() {
        "twitter" | "x.com" | "twitter.com" => "x".to_string(),
        "fb" | "facebook.com" => "facebook".to_string(),
        "ig" | "instagram.com" => "instagram".to_string(),
        _ => p,
    }
}

fn has_bad_chars(s: &str) -> bool {
    s.chars().any(|c| c.is_whitespace() || c.is_control())
}

impl Normalizer {
    /// A normalizer reading national phone numbers as numbers of `default_region` (ISO 3166 alpha-2).
    pub fn new(default_region: &str) -> Result<Self, UnknownRegion> {
        let region: Region =
            default_region.to_ascii_uppercase().parse().map_err(|_| UnknownRegion(default_region.to_string()))?;
        // The phone metadata database loads on first use (tens of milliseconds): load it now,
        // not while the first event waits.
        let _ = phonenumber::parse(Some(region), "+14155550134");
        // Its patterns compile on first use into one process-wide LRU of 100 regexes; numbers
        // from a few dozen regions use more than that, and every recompile costs tens of µs.
        if let Ok(mut cache) = phonenumber::metadata::DATABASE.cache().lock() {
            cache.set_capacity(PHONE_REGEX_CACHE_CAPACITY);
        }
        Ok(Normalizer { dialing: Dialing::new(region), phone_cache: DashMap::with_hasher(Default::default()) })
    }

    /// The canonical form of `raw`.
    pub fn normalize(&self, raw: &RawIdentifier) -> Result<Identifier, NormalizeError> {
        let value = raw.value.trim();
        if value.is_empty() {
            return Err(NormalizeError::Empty);
        }
        let canonical: CompactString = match raw.kind {
            IdentifierKind::Email => normalize_email(value)?,
            IdentifierKind::Phone => self.normalize_phone(value)?,
            IdentifierKind::SocialHandle => normalize_handle(value)?,
            IdentifierKind::AccountId
            | IdentifierKind::ChatVisitor
            | IdentifierKind::Case
            | IdentifierKind::ChatSession
            | IdentifierKind::Call => {
                if value.chars().any(char::is_control) {
                    return Err(NormalizeError::BadCharacters);
                }
                value.into()
            }
        };
        Ok(Identifier { kind: raw.kind, value: canonical })
    }

    fn normalize_phone(&self, value: &str) -> Result<CompactString, NormalizeError> {
        let Some(key) = phone_cache_key(value, &self.dialing) else {
            // Rare spellings with letters are not worth a second cache.
            return parse_phone(value, &self.dialing);
        };
        if let Some(hit) = self.phone_cache.get(&key) {
            return hit.clone();
        }
        // Parsed from what the key keeps, so every spelling of the key gets one answer whichever
        // comes first.
        let result = parse_phone(&keyed_spelling(key), &self.dialing);
        if self.phone_cache.len() >= PHONE_CACHE_CAPACITY {
            self.phone_cache.clear();
        }
        self.phone_cache.insert(key, result.clone());
        result
    }
}

/// Formatting written between a phone number's digits.
fn is_phone_punctuation(c: char) -> bool {
    matches!(c, ' ' | '(' | ')' | '-' | '.' | '/')
}

/// A cache key shared by spellings of one number, or `None` to key by the raw value.
///
/// Only values made of digits and formatting punctuation qualify: for those, libphonenumber's
/// result depends on the digits and a leading `+` alone. Letters (`ext.`, `x12`, vanity numbers)
/// keep their raw value as key. An international call prefix (the region's own, or `00`) is
/// read as a `+`; in North America, the 10-digit national form and the 11-digit form with the
/// trunk prefix 1 are rewritten to one key. The key packs (international?, digit count,
/// digits) into a `u128`, so a lookup allocates nothing.
fn phone_cache_key(value: &str, dialing: &Dialing) -> Option<u128> {
    let v = value.strip_prefix("tel:").unwrap_or(value).trim();
    // ASCII digits, so that the international prefix's pattern can read them.
    let mut digits = [0u8; 36];
    let mut n = 0;
    // A `+` before the first digit, wherever it is (`(+44) 20 ...`): the number is international.
    let mut plus = false;
    for b in v.bytes() {
        match b {
            b'0'..=b'9' if n < digits.len() => {
                digits[n] = b;
                n += 1;
            }
            b if is_phone_punctuation(char::from(b)) => {}
            b'+' if n == 0 && !plus => plus = true,
            _ => return None,
        }
    }
    let mut d = std::str::from_utf8(&digits[..n]).ok()?;
    let mut international = plus;
    let nanp = matches!(dialing.region, Region::US | Region::CA);
    if !international {
        if let Some(len) = dialing.international_prefix_len(d) {
            (d, international) = (&d[len..], true);
        } else if nanp && d.len() == 10 {
            return Some(pack(true, &["1", d]));
        } else if nanp && d.len() == 11 && d.starts_with('1') {
            international = true;
        }
    }
    Some(pack(international, &[d]))
}

/// The spelling a phone cache key stands for: `+` and the digits when international, else the
/// digits.
fn keyed_spelling(key: u128) -> String {
    let count = (key >> 121) as usize;
    let international = (key >> 120) & 1 == 1;
    let digits = key & ((1u128 << 120) - 1);
    let plus = if international { "+" } else { "" };
    format!("{plus}{digits:0count$}")
}

fn pack(international: bool, parts: &[&str]) -> u128 {
    let mut value: u128 = 0;
    let mut count: u128 = 0;
    for digit in parts.iter().flat_map(|p| p.bytes()) {
        value = value * 10 + u128::from(digit - b'0');
        count += 1;
    }
    (count << 121) | (u128::from(international) << 120) | value
}

/// The configured default region is not an ISO 3166 alpha-2 code.
#[derive(Debug, Clone, Error)]
#[error("unknown phone region `{0}` (expected an ISO 3166 alpha-2 code such as US or GB)")]
pub struct UnknownRegion(pub String);

fn normalize_email(value: &str) -> Result<CompactString, NormalizeError> {
    // `Display Name <addr>`: the address is inside the last angle brackets.
    let addr = match (value.rfind('<'), value.rfind('>')) {
        (Some(l), Some(r)) if l < r => &value[l + 1..r],
        (None, None) => value,
        _ => return Err(NormalizeError::InvalidEmail),
    };
    let addr = addr.trim();
    let addr = addr.strip_prefix("mailto:").unwrap_or(addr);
    if has_bad_chars(addr) {
        return Err(NormalizeError::InvalidEmail);
    }
    let (local, domain) = addr.rsplit_once('@').ok_or(NormalizeError::InvalidEmail)?;
    let domain = domain.trim_end_matches('.');
    if local.is_empty()
        || local.contains('@')
        || !domain.contains('.')
        || domain.split('.').any(str::is_empty)
        || local.len() > 64
        || domain.len() > 253
    {
        return Err(NormalizeError::InvalidEmail);
    }
    let mut out = CompactString::with_capacity(local.len() + 1 + domain.len());
    if local.is_ascii() {
        out.push_str(local);
        out.make_ascii_lowercase();
    } else {
        out.push_str(&local.to_lowercase());
    }
    out.push('@');
    let at = out.len();
    out.push_str(domain);
    out[at..].make_ascii_lowercase();
    Ok(out)
}

fn parse_phone(value: &str, dialing: &Dialing) -> Result<CompactString, NormalizeError> {
    let v = value.strip_prefix("tel:").unwrap_or(value).trim();
    // An international call prefix written out instead of `+` (libphonenumber reads only the
    // region's own; `00` is read from anywhere).
    // The leading digits (through formatting punctuation), each with where it ends in `v`.
    let mut leading = String::new();
    let mut ends = Vec::new();
    for (i, c) in v.char_indices() {
        match c {
            '0'..='9' => {
                leading.push(c);
                ends.push(i + 1);
            }
            c if is_phone_punctuation(c) => {}
            _ => break,
        }
    }
    let v = match dialing.international_prefix_len(&leading) {
        Some(len) => format!("+{}", &v[ends[len - 1]..]),
        None => v.to_string(),
    };
    let n = phonenumber::parse(Some(dialing.region), &v).map_err(|_| NormalizeError::InvalidPhone)?;
    if !crate::phone::is_valid(&n) {
        return Err(NormalizeError::InvalidPhone);
    }
    Ok(CompactString::from(n.format().mode(phonenumber::Mode::E164).to_string()))
}

fn normalize_handle(value: &str) -> Result<CompactString, NormalizeError> {
    let (platform, handle) = value.split_once(':').ok_or(NormalizeError::InvalidHandle)?;
    let platform = canonical_platform(platform);
    let handle = handle.trim();
    let handle = handle.strip_prefix('@').unwrap_or(handle);
    if platform.is_empty() || handle.is_empty() || has_bad_chars(&platform) || has_bad_chars(handle) {
        return Err(NormalizeError::InvalidHandle);
    }
    let handle = handle.to_lowercase();
    let mut out = CompactString::with_capacity(platform.len() + 1 + handle.len());
    out.push_str(&platform);
    out.push(':');
    out.push_str(&handle);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(kind: IdentifierKind, v: &str) -> Result<String, NormalizeError> {
        Normalizer::new("US").unwrap().normalize(&RawIdentifier::new(kind, v)).map(|i| i.value.to_string())
    }

    #[test]
    fn emails_lose_case_whitespace_and_display_names() {
        for v in [
            "jo.smith@x.com",
            "  Jo.Smith@X.COM ",
            "Jo Smith <Jo.Smith@x.com>",
            "\"Smith, Jo\" <jo.smith@X.com>",
            "mailto:jo.smith@x.com",
        ] {
            assert_eq!(norm(IdentifierKind::Email, v).unwrap(), "jo.smith@x.com", "{v}");
        }
    }

    #[test]
    fn malformed_emails_are_reported_not_guessed() {
        for v in ["jo", "jo@", "@x.com", "jo@localhost", "jo smith@x.com", "a@b@c.com", "Jo <jo@x.com", "jo@x..com"] {
            assert_eq!(norm(IdentifierKind::Email, v), Err(NormalizeError::InvalidEmail), "{v}");
        }
        assert_eq!(norm(IdentifierKind::Email, "   "), Err(NormalizeError::Empty));
    }

    #[test]
    fn phones_become_e164() {
        for v in [
            "(415) 555-0134",
            "415.555.0134",
            "+1 415 555 0134",
            "1-415-555-0134",
            "tel:+14155550134",
            "011 1 415 555 0134",
        ] {
            assert_eq!(norm(IdentifierKind::Phone, v).unwrap(), "+14155550134", "{v}");
        }
        assert_eq!(norm(IdentifierKind::Phone, "0044 20 7946 0958").unwrap(), "+442079460958");
        assert_eq!(norm(IdentifierKind::Phone, "+44 20 7946 0958").unwrap(), "+442079460958");
    }

    #[test]
    fn spellings_of_one_number_share_a_cache_entry_and_results_match_fresh_parses() {
        let n = Normalizer::new("US").unwrap();
        let (us, gb) = (Dialing::new(Region::US), Dialing::new(Region::GB));
        let spellings = ["(415) 555-0134", "415.555.0134", "+1 415 555 0134", "1-415-555-0134", "011 1 415 555 0134"];
        let key = phone_cache_key("+14155550134", &us);
        assert!(key.is_some());
        for v in spellings {
            assert_eq!(phone_cache_key(v, &us), key, "{v}");
            assert_eq!(
                n.normalize(&RawIdentifier::new(IdentifierKind::Phone, v)).unwrap().value.as_str(),
                "+14155550134"
            );
        }
        // Leading zeros and the international flag are part of the key.
        assert_ne!(phone_cache_key("020 7946 0958", &gb), phone_cache_key("20 7946 0958", &gb));
        assert_ne!(phone_cache_key("+44 20 7946 0958", &gb), phone_cache_key("44 20 7946 0958", &gb));
        // Letters keep the raw value as key: an extension must not be read as more digits.
        assert_eq!(phone_cache_key("+1 212 555 0199 ext. 12", &us), None);
        assert_eq!(norm(IdentifierKind::Phone, "+1 212 555 0199 ext. 12").unwrap(), "+12125550199");
        assert_eq!(norm(IdentifierKind::Phone, "+1212555019912"), Err(NormalizeError::InvalidPhone));
        // A `+` after an opening bracket is international too; two are not a spelling we key.
        assert_eq!(phone_cache_key("(+44) 20 7946 0958", &us), phone_cache_key("+44 20 7946 0958", &us));
        assert_ne!(phone_cache_key("(+44) 20 7946 0958", &us), phone_cache_key("44 20 7946 0958", &us));
        assert_eq!(phone_cache_key("++44 20 7946 0958", &us), None);
        // Whatever the order values arrive in, each gets the same answer: a cache hit and a
        // fresh parse agree.
        let values = [
            "(0044) 20 7946 0958",
            "12",
            "0000000000",
            "44 20 7946 0958",
            "(+44) 20 7946 0958",
            "+44 20 7946 0958",
            "0044 20 7946 0958",
            "20 7946 0958",
            "+1 415 555 0134",
            "(415) 555-0134",
            "1 415 555 0134",
        ];
        let answers = |order: &mut dyn Iterator<Item = &&str>| {
            let n = Normalizer::new("US").unwrap();
            let mut out: Vec<(String, Result<CompactString, NormalizeError>)> = order
                .map(|v| (v.to_string(), n.normalize(&RawIdentifier::new(IdentifierKind::Phone, *v)).map(|i| i.value)))
                .collect();
            out.sort_by(|a, b| a.0.cmp(&b.0));
            out
        };
        let forward = answers(&mut values.iter());
        assert_eq!(forward, answers(&mut values.iter().rev()));
        let of = |v: &str| forward.iter().find(|(k, _)| k == v).unwrap().1.clone();
        assert_eq!(of("(0044) 20 7946 0958").unwrap(), "+442079460958");
        assert_eq!(of("(415) 555-0134").unwrap(), "+14155550134");
    }

    #[test]
    fn each_regions_international_call_prefix_reads_as_a_plus() {
        // The same London number dialled from Australia (0011), Japan (010), the US (011) and
        // anywhere with 00, each under its region's default.
        for (region, v) in [
            ("AU", "0011 44 20 7946 0958"),
            ("JP", "010-44-20-7946-0958"),
            ("US", "011 44 20 7946 0958"),
            ("DE", "0044 20 7946 0958"),
            ("AU", "0044 20 7946 0958"),
            ("AU", "0011 44 20 7946 0958 ext. 3"),
        ] {
            let n = Normalizer::new(region).unwrap();
            let got = n.normalize(&RawIdentifier::new(IdentifierKind::Phone, v)).map(|i| i.value);
            assert_eq!(got.as_deref(), Ok("+442079460958"), "{region} {v}");
        }
        // National numbers stay national: Sydney from Australia, Tokyo from Japan.
        let au = Normalizer::new("AU").unwrap();
        let sydney = au.normalize(&RawIdentifier::new(IdentifierKind::Phone, "(02) 9374 4000")).unwrap();
        assert_eq!(sydney.value, "+61293744000");
        let jp = Normalizer::new("JP").unwrap();
        let tokyo = jp.normalize(&RawIdentifier::new(IdentifierKind::Phone, "03-3224-9999")).unwrap();
        assert_eq!(tokyo.value, "+81332249999");
        // A prefix followed by 0 is not one (no country code starts with 0).
        assert_eq!(Dialing::new(Region::AU).international_prefix_len("0011044"), None);
        assert_eq!(Dialing::new(Region::AU).international_prefix_len("001144"), Some(4));
    }

    #[test]
    fn impossible_phones_are_reported() {
        for v in ["12", "unknown", "0000000000", "1234567890"] {
            assert_eq!(norm(IdentifierKind::Phone, v), Err(NormalizeError::InvalidPhone), "{v}");
        }
        // Cached results agree with fresh ones.
        let n = Normalizer::new("US").unwrap();
        let raw = RawIdentifier::new(IdentifierKind::Phone, "12");
        assert_eq!(n.normalize(&raw), n.normalize(&raw));
    }

    #[test]
    fn handles_are_per_platform_without_at_and_case() {
        assert_eq!(norm(IdentifierKind::SocialHandle, "X:@JoSmith").unwrap(), "x:josmith");
        assert_eq!(norm(IdentifierKind::SocialHandle, "twitter: josmith").unwrap(), "x:josmith");
        assert_ne!(norm(IdentifierKind::SocialHandle, "instagram:josmith").unwrap(), "x:josmith");
        assert_eq!(norm(IdentifierKind::SocialHandle, "x:@"), Err(NormalizeError::InvalidHandle));
    }

    #[test]
    fn opaque_ids_are_trimmed_and_keep_case() {
        assert_eq!(norm(IdentifierKind::AccountId, " AC-001 ").unwrap(), "AC-001");
        assert_eq!(norm(IdentifierKind::AccountId, "A\u{7}"), Err(NormalizeError::BadCharacters));
    }

    #[test]
    fn unknown_region_is_a_clear_error() {
        assert!(Normalizer::new("ZZ").unwrap_err().to_string().contains("ZZ"));
        assert!(Normalizer::new("gb").is_ok());
    }
}

#[cfg(test)]
mod total {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        /// Normalization is total: any value of any kind, in any region, is normalized or
        /// refused with a reason, never a panic (phone numbers go through a third-party parser).
        #[test]
        fn any_value_of_any_kind_normalizes_or_is_refused(
            kind in prop::sample::select(IdentifierKind::ALL.to_vec()),
            value in prop_oneof![
                "(\\PC|[0-9+()\\- .#*x]|tel:|00|011|ext|@|:){0,40}",
                "\\+?[0-9 ()+\\-.x#*]{0,30}",
            ],
            region in prop::sample::select(vec!["US", "GB", "DE", "FR", "IN", "BR", "AU", "JP"]),
        ) {
            let n = Normalizer::new(region).unwrap();
            let _ = n.normalize(&RawIdentifier::new(kind, value.as_str()));
        }
    }
}
