//! Identifier normalization: one canonical value per identifier, or a reason why not.

use dashmap::DashMap;
use omnistitch_model::text::trim;
use omnistitch_model::{CompactString, Identifier, IdentifierKind, RawIdentifier};
use phonenumber::country::Id as Region;
use phonenumber::PhoneNumber;
use thiserror::Error;

use crate::email::{has_format_chars, normalize_email};

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

/// Social platforms known under several names: a short name, or a site's host name (with or
/// without `www.` or the mobile site's `m.`).
fn canonical_platform(p: &str) -> String {
    let p = p.trim().to_ascii_lowercase();
    let host = p.strip_prefix("www.").or_else(|| p.strip_prefix("m.")).unwrap_or(&p);
    let known = match host {
        "twitter" | "x.com" | "twitter.com" | "mobile.twitter.com" => "x",
        "fb" | "facebook.com" | "fb.com" => "facebook",
        "ig" | "instagram.com" => "instagram",
        "tiktok.com" => "tiktok",
        "linkedin.com" => "linkedin",
        "youtube.com" => "youtube",
        _ => return p,
    };
    known.to_string()
}

/// Whether `s` holds whitespace or a control character (no identifier does).
pub(crate) fn has_bad_chars(s: &str) -> bool {
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
        let value = trim(&raw.value);
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
                // Invisible format characters (a zero-width space, a byte-order mark) would make
                // a blank or placeholder value look like an id, and one id two.
                if value.chars().any(char::is_control) || crate::email::has_format_chars(value) {
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
    let v = strip_tel(value);
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

/// A region whose rules read a number written with its country code exactly as written: it has
/// no national (trunk) prefix and no national parsing rules, and its international call prefix
/// starts with 0, as the digits after a `+` never do (held to that by a test). The phone
/// library strips the national prefix of the region it is given from whatever number it reads.
const AS_WRITTEN: Region = Region::IT;

/// The canonical form of a phone number: E.164, with its extension if it has one. A number
/// with its country code is read by its own country's rules, one without by the default
/// region's.
fn parse_phone(value: &str, dialing: &Dialing) -> Result<CompactString, NormalizeError> {
    let v = strip_tel(value);
    let v = respell_extension(v)?;
    let (v, international) = dialled_form(&v, dialing);
    let n = if international { parse_international(&v)? } else { parse_national(&v, dialing.region)? };
    canonical_phone(&n)
}

/// `v` without a `tel:` scheme (RFC 3966, any case: `TEL:`, `Tel:`), trimmed.
fn strip_tel(v: &str) -> &str {
    const SCHEME: &str = "tel:";
    match v.get(..SCHEME.len()) {
        Some(scheme) if scheme.eq_ignore_ascii_case(SCHEME) => trim(&v[SCHEME.len()..]),
        _ => trim(v),
    }
}

/// `...;ext=12` (RFC 3966, the spelling canonical values use) in a spelling the phone library
/// reads (`... ext. 12`), so that a canonical value normalizes to itself. The extension must be
/// digits.
fn respell_extension(v: &str) -> Result<std::borrow::Cow<'_, str>, NormalizeError> {
    const PARAM: &[u8] = b";ext=";
    let Some(at) = v.as_bytes().windows(PARAM.len()).position(|w| w.eq_ignore_ascii_case(PARAM)) else {
        return Ok(v.into());
    };
    let (number, extension) = (&v[..at], &v[at + PARAM.len()..]);
    if extension.is_empty() || !extension.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NormalizeError::InvalidPhone);
    }
    Ok(format!("{number} ext. {extension}").into())
}

/// `v` as the phone library should read it, and whether it carries its country code (a `+`
/// before its first digit). An international call prefix written out instead of a `+` (the
/// default region's own, or `00` from anywhere, after a `+` or not) becomes a `+`: the library
/// reads only the prefix of the region it is given.
fn dialled_form<'a>(v: &'a str, dialing: &Dialing) -> (std::borrow::Cow<'a, str>, bool) {
    // The leading digits (through formatting punctuation), each with where it ends in `v`.
    let mut plus = false;
    let mut leading = String::new();
    let mut ends = Vec::new();
    for (i, c) in v.char_indices() {
        match c {
            '0'..='9' => {
                leading.push(c);
                ends.push(i + 1);
            }
            '+' | '\u{FF0B}' if leading.is_empty() && !plus => plus = true,
            c if is_phone_punctuation(c) => {}
            _ => break,
        }
    }
    match dialing.international_prefix_len(&leading) {
        Some(len) => (format!("+{}", &v[ends[len - 1]..]).into(), true),
        None => (v.into(), plus),
    }
}

/// A number written with its country code, read as written; failing that, with a national
/// (trunk) prefix written after the country code (`+44 (0) 20 ...`) dropped as the country
/// code's own region drops it. Never by the default region's rules: they are another
/// country's (by North American rules, `+49 151 ...` lost the 1 of its mobile prefix).
fn parse_international(v: &str) -> Result<PhoneNumber, NormalizeError> {
    let written = phonenumber::parse(Some(AS_WRITTEN), v).map_err(|_| NormalizeError::InvalidPhone)?;
    if written.code().source() == phonenumber::country::Source::Default {
        // The library saw no `+`: it read a national number of the reading region.
        return Err(NormalizeError::InvalidPhone);
    }
    if crate::phone::is_valid(&written) {
        return Ok(written);
    }
    let own = own_region(written.code().value()).ok_or(NormalizeError::InvalidPhone)?;
    parse_national(v, own)
}

/// The main region of a country calling code (`GB` for 44, `US` for 1), if it is a region.
fn own_region(code: u16) -> Option<Region> {
    phonenumber::metadata::DATABASE.region(&code)?.first()?.parse().ok()
}

/// `v` read by the rules of `region`, if that makes it a valid number.
fn parse_national(v: &str, region: Region) -> Result<PhoneNumber, NormalizeError> {
    let n = phonenumber::parse(Some(region), v).map_err(|_| NormalizeError::InvalidPhone)?;
    if !crate::phone::is_valid(&n) {
        return Err(NormalizeError::InvalidPhone);
    }
    Ok(n)
}

/// E.164, and an extension as RFC 3966 writes it (`+12125550100;ext=12`): people behind one
/// switchboard are told apart by their extensions. Extensions in digits other than ASCII ones
/// are refused, not guessed.
fn canonical_phone(n: &PhoneNumber) -> Result<CompactString, NormalizeError> {
    let mut out = CompactString::from(n.format().mode(phonenumber::Mode::E164).to_string());
    if let Some(ext) = n.extension().map(|e| &**e).filter(|e| !e.is_empty()) {
        if !ext.bytes().all(|b| b.is_ascii_digit()) {
            return Err(NormalizeError::InvalidPhone);
        }
        out.push_str(";ext=");
        out.push_str(ext);
    }
    Ok(out)
}

fn normalize_handle(value: &str) -> Result<CompactString, NormalizeError> {
    let (platform, handle) = value.split_once(':').ok_or(NormalizeError::InvalidHandle)?;
    let platform = canonical_platform(platform);
    // A platform is a plain name (`x`, `instagram`, `tiktok`): anything else (`https`, from a
    // profile URL) is not guessed at.
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if platform.is_empty() || !platform.chars().all(plain) {
        return Err(NormalizeError::InvalidHandle);
    }
    let handle = canonical_handle(handle)?;
    let mut out = CompactString::with_capacity(platform.len() + 1 + handle.len());
    out.push_str(&platform);
    out.push(':');
    out.push_str(&handle);
    Ok(out)
}

/// The canonical form of a handle alone (the part after `platform:`): in Unicode compatibility
/// form (NFKC: fullwidth letters are letters, composed and decomposed accents one spelling),
/// lowercased, trimmed, without leading `@`s. A handle with an invisible format character (a
/// zero-width space, a byte order mark, a bidirectional control) is refused: it would be
/// another identifier that looks the same; so is one with a `/` (a URL, not a name). The
/// checks come after the mapping, which makes a fullwidth `@`, `/` or space the one it looks
/// like.
pub(crate) fn canonical_handle(handle: &str) -> Result<String, NormalizeError> {
    let mapped;
    let handle = if handle.is_ascii() {
        handle
    } else {
        if has_format_chars(handle) {
            return Err(NormalizeError::InvalidHandle);
        }
        // Lowercasing can undo the form: mapped again after it.
        let lower = crate::email::compatibility_mapped(handle).to_lowercase();
        mapped = crate::email::compatibility_mapped(&lower).into_owned();
        &mapped
    };
    let handle = trim(handle).trim_start_matches('@');
    if handle.is_empty() || has_bad_chars(handle) || has_format_chars(handle) || handle.contains('/') {
        return Err(NormalizeError::InvalidHandle);
    }
    Ok(handle.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(kind: IdentifierKind, v: &str) -> Result<String, NormalizeError> {
        Normalizer::new("US").unwrap().normalize(&RawIdentifier::new(kind, v)).map(|i| i.value.to_string())
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
        assert_eq!(norm(IdentifierKind::Phone, "+1 212 555 0199 ext. 12").unwrap(), "+12125550199;ext=12");
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
        ] {
            let n = Normalizer::new(region).unwrap();
            let got = n.normalize(&RawIdentifier::new(IdentifierKind::Phone, v)).map(|i| i.value);
            assert_eq!(got.as_deref(), Ok("+442079460958"), "{region} {v}");
        }
        let au = Normalizer::new("AU").unwrap();
        let with_extension = au.normalize(&RawIdentifier::new(IdentifierKind::Phone, "0011 44 20 7946 0958 ext. 3"));
        assert_eq!(with_extension.unwrap().value, "+442079460958;ext=3");
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
    fn handles_in_compatibility_form_and_plain_platforms() {
        let h = |v| norm(IdentifierKind::SocialHandle, v);
        // Fullwidth letters, composed and decomposed accents: one handle each.
        assert_eq!(h("x:\u{ff2a}\u{ff4f}").unwrap(), "x:jo");
        assert_eq!(h("x:jo\u{308}rg").unwrap(), h("x:J\u{f6}rg").unwrap());
        assert_eq!(h("x:J\u{f6}rg").unwrap(), "x:j\u{f6}rg");
        // A profile URL is not a platform and a handle.
        assert_eq!(h("https://x.com/jo"), Err(NormalizeError::InvalidHandle));
        assert_eq!(h("x:jo/posts"), Err(NormalizeError::InvalidHandle));
        assert_eq!(h("tiktok:@Jo.Smith").unwrap(), "tiktok:jo.smith");
        // Checked once mapped: a fullwidth `@` is stripped, a fullwidth `/` refused, a
        // character that maps to a space refused.
        assert_eq!(h("x:\u{ff20}Jo").unwrap(), "x:jo");
        assert_eq!(h("x:\u{ff20}unknown").unwrap(), "x:unknown");
        assert_eq!(h("x:jo\u{ff0f}posts"), Err(NormalizeError::InvalidHandle));
        assert_eq!(h("x:jo\u{a8}"), Err(NormalizeError::InvalidHandle));
        assert_eq!(h("x:@@jo").unwrap(), "x:jo");
        // A site's host names its platform.
        for v in ["www.instagram.com:jo", "m.instagram.com:jo", "ig:jo", "Instagram:jo"] {
            assert_eq!(h(v).unwrap(), "instagram:jo", "{v}");
        }
        assert_eq!(h("www.tiktok.com:jo").unwrap(), "tiktok:jo");
        assert_eq!(h("m.facebook.com:jo").unwrap(), "facebook:jo");
    }

    #[test]
    fn every_code_point_in_a_handle_normalizes_to_a_fixed_point() {
        let mut checked = 0;
        for c in (0..=0x10_ffffu32).filter_map(char::from_u32).filter(|c| !c.is_ascii()) {
            for v in [format!("a{c}b"), format!("{c}jo")] {
                if let Ok(once) = canonical_handle(&v) {
                    assert_eq!(canonical_handle(&once).as_ref(), Ok(&once), "U+{:04X}", c as u32);
                    checked += 1;
                }
            }
        }
        assert!(checked > 200_000, "{checked}");
    }

    #[test]
    fn opaque_ids_with_invisible_characters_are_reported() {
        for kind in [IdentifierKind::AccountId, IdentifierKind::ChatVisitor, IdentifierKind::Case] {
            for v in ["\u{200b}", "\u{feff}0000000000", "unknown\u{200b}", "\u{feff}AC-001", "AC\u{2060}-001"] {
                assert_eq!(norm(kind, v), Err(NormalizeError::BadCharacters), "{kind:?} {v:?}");
            }
            assert_eq!(norm(kind, " AC-001 ").unwrap(), "AC-001");
            assert_eq!(norm(kind, "Zoë-7").unwrap(), "Zoë-7", "other non-ASCII letters are fine");
        }
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
    fn handles_with_invisible_format_characters_are_invalid() {
        for v in ["x:jo\u{200b}", "x:\u{feff}jo", "x:j\u{200d}o", "x:jo\u{ad}smith", "x:\u{202e}oj", "x\u{200b}:jo"] {
            assert_eq!(norm(IdentifierKind::SocialHandle, v), Err(NormalizeError::InvalidHandle), "{v:?}");
        }
        // Visible non-ASCII handles are still handles.
        assert_eq!(norm(IdentifierKind::SocialHandle, "x:@J\u{f6}rg").unwrap(), "x:j\u{f6}rg");
        assert_eq!(canonical_handle("jo\u{2060}"), Err(NormalizeError::InvalidHandle));
    }

    #[test]
    fn the_tel_scheme_is_stripped_in_any_case() {
        for v in [
            "tel:+14155550134",
            "TEL:+14155550134",
            "Tel:+1-415-555-0134",
            "tEl:(415) 555-0134",
            "TEL: +1 415 555 0134",
        ] {
            assert_eq!(phone_in("US", v).as_deref(), Ok("+14155550134"), "{v}");
        }
        assert_eq!(phone_in("US", "TEL:+1-212-555-0199;EXT=12").as_deref(), Ok("+12125550199;ext=12"));
        // Read as written after the scheme: by the number's own country, an international call
        // prefix as a `+`, one cache entry with the spelling without it.
        for (region, v, expected) in [
            ("US", "TEL:+49 151 23456789", "+4915123456789"),
            ("US", "Tel:0044 20 7946 0958", "+442079460958"),
            ("AU", "TEL:0011 44 20 7946 0958", "+442079460958"),
            ("GB", "TEL:+44 (0) 20 7946 0958", "+442079460958"),
        ] {
            assert_eq!(phone_in(region, v).as_deref(), Ok(expected), "{region} {v}");
        }
        let us = Dialing::new(Region::US);
        assert_eq!(phone_cache_key("TEL:+14155550134", &us), phone_cache_key("+14155550134", &us));
        assert!(phone_cache_key("TEL:(415) 555-0134", &us).is_some());
        // Only a scheme at the start is one.
        assert_eq!(phone_in("US", "+1 415 555 0134 tel:"), Err(NormalizeError::InvalidPhone));
    }

    #[test]
    fn opaque_ids_are_trimmed_and_keep_case() {
        assert_eq!(norm(IdentifierKind::AccountId, " AC-001 ").unwrap(), "AC-001");
        assert_eq!(norm(IdentifierKind::AccountId, "A\u{7}"), Err(NormalizeError::BadCharacters));
    }

    /// `value` normalized as a phone number under `region`, through the cache and fresh.
    fn phone_in(region: &str, value: &str) -> Result<String, NormalizeError> {
        let n = Normalizer::new(region).unwrap();
        let cached = n.normalize(&RawIdentifier::new(IdentifierKind::Phone, value)).map(|i| i.value.to_string());
        let fresh = parse_phone(value, &n.dialing).map(|v| v.to_string());
        assert_eq!(cached, fresh, "{region} {value}: the cache and a fresh parse disagree");
        cached
    }

    #[test]
    fn numbers_with_a_country_code_read_the_same_under_every_default_region() {
        for region in ["US", "GB", "DE", "AU", "IT", "FR", "RU", "JP"] {
            for (v, expected) in [
                ("+86 139 1234 5678", "+8613912345678"),
                ("+86 391 2345 678", "+863912345678"),
                ("+49 151 23456789", "+4915123456789"),
                ("+49 5123 456789", "+495123456789"),
                ("+44 161 496 0000", "+441614960000"),
                ("+44 121 496 0000", "+441214960000"),
                ("+33 1 42 68 53 00", "+33142685300"),
                ("+39 06 4991 1234", "+390649911234"),
                ("+39 347 123 4567", "+393471234567"),
                ("+1 212 555 0199", "+12125550199"),
                ("+61 2 9374 4000", "+61293744000"),
                ("+7 495 123 45 67", "+74951234567"),
                ("+7 800 555 35 35", "+78005553535"),
                // A national (trunk) prefix written after the country code is dropped.
                ("+44 (0) 20 7946 0958", "+442079460958"),
                ("(+44) 20 7946 0958", "+442079460958"),
                ("0044 161 496 0000", "+441614960000"),
                ("+0044 161 496 0000", "+441614960000"),
            ] {
                assert_eq!(phone_in(region, v).as_deref(), Ok(expected), "{region} {v}");
            }
        }
        // The region's own international call prefix, after a `+` or not.
        assert_eq!(phone_in("US", "011 49 151 23456789").as_deref(), Ok("+4915123456789"));
        assert_eq!(phone_in("US", "+011 86 139 1234 5678").as_deref(), Ok("+8613912345678"));
        assert_eq!(phone_in("AU", "0011 33 1 42 68 53 00").as_deref(), Ok("+33142685300"));
    }

    #[test]
    fn every_regions_example_numbers_with_their_country_code_are_read_as_written() {
        use phonenumber::metadata::DATABASE;
        use phonenumber::Type;
        let normalizers: Vec<_> = ["US", "GB", "DE", "AU", "RU"].map(|r| Normalizer::new(r).unwrap()).into();
        let mut checked = 0;
        for meta in DATABASE.iter() {
            let examples = [Type::FixedLine, Type::Mobile, Type::TollFree, Type::Voip]
                .into_iter()
                .filter_map(|t| meta.descriptors().get(t)?.example());
            for example in examples {
                let v = format!("+{} {example}", meta.country_code());
                let expected = format!("+{}{example}", meta.country_code());
                for n in &normalizers {
                    let got = n.normalize(&RawIdentifier::new(IdentifierKind::Phone, v.as_str())).map(|i| i.value);
                    assert_eq!(
                        got.as_deref(),
                        Ok(expected.as_str()),
                        "{v} ({}) under {:?}",
                        meta.id(),
                        n.dialing.region
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 3_000, "{checked}");
    }

    #[test]
    fn the_as_written_region_strips_nothing_from_numbers_after_a_plus() {
        let meta = phonenumber::metadata::DATABASE.by_id(AS_WRITTEN.as_ref()).unwrap();
        assert_eq!(meta.national_prefix(), None);
        assert!(meta.national_prefix_for_parsing().is_none());
        assert_eq!(meta.national_prefix_transform_rule(), None);
        let idd = meta.international_prefix().unwrap();
        for first in '1'..='9' {
            assert!(idd.find(&format!("{first}23456789")).is_none_or(|m| m.start() > 0), "{first}");
        }
    }

    #[test]
    fn national_numbers_are_read_by_the_default_region() {
        for (region, v, expected) in [
            ("US", "(212) 555-0199", "+12125550199"),
            ("GB", "020 7946 0958", "+442079460958"),
            ("GB", "0161 496 0000", "+441614960000"),
            ("DE", "0151 23456789", "+4915123456789"),
            ("DE", "030 1234567", "+49301234567"),
            ("AU", "(02) 9374 4000", "+61293744000"),
            ("IT", "06 4991 1234", "+390649911234"),
        ] {
            assert_eq!(phone_in(region, v).as_deref(), Ok(expected), "{region} {v}");
        }
    }

    #[test]
    fn extensions_are_kept_so_a_switchboard_does_not_join_its_callers() {
        for v in [
            "+1 212 555 0199 ext. 12",
            "+1 212 555 0199 x12",
            "(212) 555-0199 x12",
            "212-555-0199#12",
            "+1 212 555 0199 extension 12",
            "tel:+1-212-555-0199;ext=12",
            "+12125550199;ext=12",
            "+12125550199;EXT=12",
        ] {
            assert_eq!(phone_in("US", v).as_deref(), Ok("+12125550199;ext=12"), "{v}");
        }
        assert_eq!(phone_in("US", "+1 212 555 0199 ext. 47").as_deref(), Ok("+12125550199;ext=47"));
        assert_eq!(phone_in("US", "+1 212 555 0199").as_deref(), Ok("+12125550199"));
        assert_eq!(phone_in("GB", "020 7946 0958 ext. 0012").as_deref(), Ok("+442079460958;ext=0012"));
        // Not an extension: refused, not dropped.
        for v in ["+12125550199;ext=", "+12125550199;ext=1a", "+12125550199;ext=123456789"] {
            assert_eq!(phone_in("US", v), Err(NormalizeError::InvalidPhone), "{v}");
        }
    }

    #[test]
    fn canonical_values_normalize_to_themselves() {
        let n = Normalizer::new("GB").unwrap();
        for (kind, v) in [
            (IdentifierKind::Phone, "+12125550199;ext=12"),
            (IdentifierKind::Phone, "+4915123456789"),
            (IdentifierKind::Email, "josé@xn--bcher-kva.de"),
            (IdentifierKind::Email, "jo@x.com"),
            (IdentifierKind::SocialHandle, "x:josmith"),
        ] {
            assert_eq!(n.normalize(&RawIdentifier::new(kind, v)).unwrap().value, v, "{v}");
        }
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
                "(\\PC|[0-9+()\\- .#*x]|tel:|TEL:|00|011|ext|@|:){0,40}",
                "\\+?[0-9 ()+\\-.x#*]{0,30}",
            ],
            region in prop::sample::select(vec!["US", "GB", "DE", "FR", "IN", "BR", "AU", "JP"]),
        ) {
            let n = Normalizer::new(region).unwrap();
            let _ = n.normalize(&RawIdentifier::new(kind, value.as_str()));
        }

        /// A canonical email address normalizes to itself, whatever mapping made it.
        #[test]
        fn a_canonical_address_is_a_fixed_point(
            local in "(\\PC|[\u{ff01}-\u{ff5e}]|[\u{fb00}-\u{fb06}]|[\u{2460}-\u{24ff}]|[\u{1d400}-\u{1d7ff}]){1,12}",
            domain in prop::sample::select(vec!["x.com", "b\u{fc}cher.de", "\u{ff58}\u{ff0e}\u{ff43}\u{ff4f}\u{ff4d}"]),
        ) {
            if let Ok(once) = normalize_email(&format!("{local}@{domain}")) {
                prop_assert_eq!(normalize_email(&once), Ok(once.clone()));
            }
        }
    }
}
