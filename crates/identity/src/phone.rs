//! Phone number validity exactly as libphonenumber's `is_valid` decides it, with fewer pattern
//! matches.
//!
//! The library finds the number's region by typing the number against each region of its
//! country code, then types it once more against the region found; typing tries the rare types
//! (premium rate, shared cost, pager...) before fixed line and mobile, one regular expression
//! each. Validity only asks whether some type matches, so here a region is typed once, the
//! common types first, and the search stops at the first match: for a valid North American
//! number two pattern matches instead of about twenty. The answer is the library's (a test
//! holds the two to each other over every region's example numbers and their variants).

use std::sync::{LazyLock, RwLock};

use hashbrown::{HashMap, HashSet};
use phonenumber::metadata::{Descriptor, Metadata, DATABASE};
use phonenumber::{PhoneNumber, Type};
use regex::Regex;
use regex_cache::CachedRegex;

/// The library's patterns compiled once each, by the address of their text (the metadata is a
/// static: addresses are stable). The library finds its compiled pattern on every match by
/// hashing the whole pattern text into a shared LRU, which costs more than the match itself.
static COMPILED: LazyLock<RwLock<HashMap<usize, Regex>>> = LazyLock::new(Default::default);

/// Where the library's `pattern` first matches in `text` starts at 0 (as the library asks it:
/// `find`, then the start; compiled as the library compiles its metadata, whitespace ignored).
fn matches_at_start(pattern: &CachedRegex, text: &str) -> bool {
    let source = pattern.as_str();
    let key = source.as_ptr() as usize;
    if let Some(re) = COMPILED.read().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return re.find(text).is_some_and(|m| m.start() == 0);
    }
    let Ok(re) = regex::RegexBuilder::new(source).ignore_whitespace(true).build() else {
        // The library's own compile of it (it would fail there too).
        return pattern.find(text).is_some_and(|m| m.start() == 0);
    };
    let found = re.find(text).is_some_and(|m| m.start() == 0);
    COMPILED.write().unwrap_or_else(|e| e.into_inner()).insert(key, re);
    found
}

/// `descriptor.is_match(national)`, with the pattern compiled once.
fn descriptor_matches(descriptor: &Descriptor, national: &str) -> bool {
    let lengths = descriptor.possible_length();
    if !lengths.is_empty() && !lengths.contains(&(national.len() as u16)) {
        return false;
    }
    matches_at_start(descriptor.national_number(), national)
}

/// The types a valid number matches one of (besides its region's general pattern), the common
/// ones first: libphonenumber's typing tries the same ones, in another order.
const TYPES: [Type; 10] = [
    Type::FixedLine,
    Type::Mobile,
    Type::TollFree,
    Type::PremiumRate,
    Type::SharedCost,
    Type::Voip,
    Type::PersonalNumber,
    Type::Pager,
    Type::Uan,
    Type::Voicemail,
];

/// Whether `national` has a type in `meta` (libphonenumber: `number_type(meta, national) != Unknown`).
fn has_type(meta: &Metadata, national: &str) -> bool {
    let d = meta.descriptors();
    descriptor_matches(d.general(), national)
        && TYPES.iter().any(|&t| d.get(t).is_some_and(|p| descriptor_matches(p, national)))
}

/// Whether `number` is valid: `phonenumber::is_valid(number)`, computed with fewer matches.
pub(crate) fn is_valid(number: &PhoneNumber) -> bool {
    let code = number.country().code();
    let national = number.national().to_string();
    let Some(regions) = DATABASE.region(&code) else { return false };
    if let [only] = regions[..] {
        // One region: the number is typed against it (non-geographic codes: their entry).
        let meta = if only == "001" {
            DATABASE.by_code(&code).and_then(|m| m.into_iter().next())
        } else {
            only.parse::<phonenumber::country::Id>().ok().and_then(|id| DATABASE.by_id(id.as_ref()))
        };
        return meta.is_some_and(|m| has_type(m, &national));
    }
    for region in regions {
        let Some(meta) = DATABASE.by_id(region) else { return false };
        match meta.leading_digits() {
            // A region known by its leading digits is the number's region whatever its type.
            Some(leading) => {
                if matches_at_start(leading, &national) {
                    return has_type(meta, &national);
                }
            }
            // Otherwise the first region that types the number is its region: it is valid.
            None => {
                if has_type(meta, &national) {
                    return true;
                }
            }
        }
    }
    false
}

/// Every country calling code the metadata knows.
static COUNTRY_CODES: LazyLock<HashSet<u16>> = LazyLock::new(|| DATABASE.iter().map(|m| m.country_code()).collect());

/// The national significant number of a canonical phone value (`+<code><national>`, maybe
/// `;ext=...` after it). Country calling codes are prefix-free: the first 1 to 3 digits that
/// are one are the code.
pub(crate) fn national_digits(canonical: &str) -> Option<&str> {
    let digits = canonical.strip_prefix('+')?;
    let digits = digits.split_once(';').map_or(digits, |(number, _)| number);
    (1..=3).find_map(|len| {
        let code: u16 = digits.get(..len)?.parse().ok()?;
        COUNTRY_CODES.contains(&code).then(|| &digits[len..])
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `+<code><national>` parsed, if the library parses it.
    fn number(code: u16, national: &str) -> Option<PhoneNumber> {
        phonenumber::parse(None, format!("+{code}{national}")).ok()
    }

    /// Every region's example numbers and variants of them (a digit changed, one dropped, one
    /// added), valid and not: the answer is always the library's.
    #[test]
    fn agrees_with_the_library_on_every_regions_examples_and_their_variants() {
        let (mut checked, mut valid) = (0, 0);
        for meta in DATABASE.iter() {
            let d = meta.descriptors();
            let examples = TYPES.iter().filter_map(|&t| d.get(t)).filter_map(|p| p.example());
            for example in examples {
                let mut variants =
                    vec![example.to_string(), format!("{example}5"), example[..example.len() - 1].into()];
                for i in 0..example.len() {
                    let mut v = example.as_bytes().to_vec();
                    v[i] = b'0' + (v[i] - b'0' + 3) % 10;
                    variants.push(String::from_utf8(v).expect("digits"));
                }
                for v in variants {
                    let Some(n) = number(meta.country_code(), &v) else { continue };
                    let expected = phonenumber::is_valid(&n);
                    assert_eq!(is_valid(&n), expected, "+{} {v} ({})", meta.country_code(), meta.id());
                    checked += 1;
                    valid += usize::from(expected);
                }
            }
        }
        // Both answers well represented: the comparison means something.
        assert!(checked > 10_000 && valid > 2_000 && checked - valid > 2_000, "{checked} checked, {valid} valid");
    }

    proptest! {
        /// Random national numbers under busy country codes (North America's shared +1 above all).
        #[test]
        fn agrees_with_the_library_on_random_numbers(
            code in prop::sample::select(vec![1u16, 1, 1, 7, 33, 39, 44, 49, 61, 81, 86, 91, 262, 290, 800, 882, 979]),
            national in "[0-9]{4,13}",
        ) {
            if let Some(n) = number(code, &national) {
                prop_assert_eq!(is_valid(&n), phonenumber::is_valid(&n));
            }
        }
    }
}
