//! Email addresses to their canonical form: display names, `mailto:` and case gone,
//! Unicode compatibility-mapped and composed, domains in their ASCII (IDNA) form; what cannot
//! be read as one address is reported, not guessed.

use std::borrow::Cow;

use icu_normalizer::ComposingNormalizerBorrowed;
use icu_properties::props::GeneralCategory;
use icu_properties::CodePointMapData;
use omnistitch_model::text::trim;
use omnistitch_model::CompactString;

use crate::normalize::{has_bad_chars, NormalizeError};

/// The canonical form of an email address: read in Unicode NFKC (compatibility spellings are
/// their plain characters: the fullwidth `ｊｏ＠ｘ.ｃｏｍ` an East Asian input mode types, the
/// ligature `ﬁ`), `Display Name <addr>` and a `mailto:` scheme removed, the local part
/// lowercased, the domain in its ASCII (IDNA) form, so compatibility, composed and decomposed
/// spellings of one address are one identifier. The mapping comes first, so what it makes
/// (a `＠` is an `@`) is read and checked as if written so: a canonical address normalizes to
/// itself.
///
/// Refused rather than guessed: brackets that do not pair up, invisible format characters
/// (zero-width spaces, byte order marks), domain literals (`jo@[192.0.2.1]`), and `mailto:`
/// links with a query (`?subject=...`, `?cc=...`): a query can name further recipients, so the
/// link is not one address.
pub(crate) fn normalize_email(value: &str) -> Result<CompactString, NormalizeError> {
    let value = compatibility_mapped(value);
    let addr = strip_mailto(trim(bracketed_address(&value)?))?;
    if has_bad_chars(addr) || has_format_chars(addr) {
        return Err(NormalizeError::InvalidEmail);
    }
    let (local, domain) = addr.rsplit_once('@').ok_or(NormalizeError::InvalidEmail)?;
    if local.is_empty() || local.contains('@') {
        return Err(NormalizeError::InvalidEmail);
    }
    let domain = ascii_domain(domain.trim_end_matches('.'))?;
    let local = canonical_local_part(local);
    // Counted as kept: lowercasing can lengthen a local part.
    if local.len() > 64 {
        return Err(NormalizeError::InvalidEmail);
    }
    let mut out = CompactString::with_capacity(local.len() + 1 + domain.len());
    out.push_str(&local);
    out.push('@');
    out.push_str(&domain);
    Ok(out)
}

/// The address of `Display Name <addr>` (inside its pair of angle brackets), or the whole
/// value when it has none. Brackets must pair up, one level deep: `Jo <jo@x.com>>` is refused,
/// and so is a second pair (`Jo <jo@x.com>, Ann <ann@y.com>`: a list of addresses, whose last
/// one taken as the value would put one person's identifiers on another's profile).
fn bracketed_address(value: &str) -> Result<&str, NormalizeError> {
    let mut open = None;
    let mut last = None;
    for (i, c) in value.char_indices() {
        match (c, open) {
            ('<', None) if last.is_some() => return Err(NormalizeError::InvalidEmail),
            ('<', None) => open = Some(i),
            ('>', Some(l)) => (open, last) = (None, Some((l, i))),
            ('<' | '>', _) => return Err(NormalizeError::InvalidEmail),
            _ => {}
        }
    }
    match (open, last) {
        (Some(_), _) => Err(NormalizeError::InvalidEmail),
        (None, Some((l, r))) => Ok(&value[l + 1..r]),
        (None, None) => Ok(value),
    }
}

/// `addr` without a `mailto:` scheme (any case); a `mailto:` link with a query is refused.
fn strip_mailto(addr: &str) -> Result<&str, NormalizeError> {
    const SCHEME: &str = "mailto:";
    match addr.get(..SCHEME.len()) {
        Some(scheme) if scheme.eq_ignore_ascii_case(SCHEME) => {
            let rest = &addr[SCHEME.len()..];
            if rest.contains('?') {
                return Err(NormalizeError::InvalidEmail);
            }
            Ok(rest)
        }
        _ => Ok(addr),
    }
}

/// Whether `s` holds an invisible format character (Unicode general category Cf: zero-width
/// spaces and joiners, byte order marks, bidirectional controls, soft hyphens).
pub(crate) fn has_format_chars(s: &str) -> bool {
    if s.is_ascii() {
        return false;
    }
    let categories = CodePointMapData::<GeneralCategory>::new();
    s.chars().any(|c| categories.get(c) == GeneralCategory::Format)
}

/// A domain in its ASCII form (UTS 46: mapped, lowercased, NFC, then punycode), or why not:
/// no dot, an empty label, a domain literal, a character no domain may hold, or too long.
fn ascii_domain(domain: &str) -> Result<Cow<'_, str>, NormalizeError> {
    if domain.starts_with('[') {
        return Err(NormalizeError::InvalidEmail);
    }
    let ascii = idna::domain_to_ascii_cow(domain.as_bytes(), idna::AsciiDenyList::URL)
        .map_err(|_| NormalizeError::InvalidEmail)?;
    if !ascii.contains('.') || ascii.split('.').any(str::is_empty) || ascii.len() > 253 {
        return Err(NormalizeError::InvalidEmail);
    }
    Ok(ascii)
}

/// `value` in Unicode NFKC: compatibility characters (fullwidth and halfwidth forms,
/// ligatures, circled and styled letters) become the characters they stand for.
pub(crate) fn compatibility_mapped(value: &str) -> Cow<'_, str> {
    if value.is_ascii() {
        return value.into();
    }
    ComposingNormalizerBorrowed::new_nfkc().normalize(value)
}

/// A local part (already in NFKC) lowercased (Unicode lowercase beyond ASCII) and in NFKC
/// again: lowercasing can undo the form.
fn canonical_local_part(local: &str) -> Cow<'_, str> {
    if local.is_ascii() {
        return if local.bytes().any(|b| b.is_ascii_uppercase()) {
            local.to_ascii_lowercase().into()
        } else {
            local.into()
        };
    }
    let nfkc = ComposingNormalizerBorrowed::new_nfkc();
    nfkc.normalize(&local.to_lowercase()).into_owned().into()
}

#[cfg(test)]
mod tests {
    use omnistitch_model::{IdentifierKind, RawIdentifier};

    use super::*;
    use crate::normalize::Normalizer;

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
    fn invisible_characters_brackets_queries_and_domain_literals_make_emails_invalid() {
        for v in [
            "jo\u{200b}@x.com",
            "\u{feff}jo@x.com",
            "jo@x\u{200d}.com",
            "jo\u{ad}smith@x.com",
            "Jo <jo@x.com>>",
            "Jo <<jo@x.com>",
            "Jo > <jo@x.com>",
            "Jo <jo@x.com",
            // A list of addresses in one value: not one person's.
            "Jo <jo@x.com>, Ann <ann@y.com>",
            "<jo@x.com> <ann@y.com>",
            "mailto:jo@x.com?subject=hi",
            "MAILTO:jo@x.com?cc=ann@y.com",
            "jo@[127.0.0.1]",
            "jo@[IPv6:2001:db8::1]",
            "jo@x.com?subject=hi",
        ] {
            assert_eq!(norm(IdentifierKind::Email, v), Err(NormalizeError::InvalidEmail), "{v:?}");
        }
        // A format character in the display name is not part of the address.
        assert_eq!(norm(IdentifierKind::Email, "Jo\u{200e} <jo@x.com>").unwrap(), "jo@x.com");
        assert_eq!(norm(IdentifierKind::Email, "MailTo:Jo@X.com").unwrap(), "jo@x.com");
        assert_eq!(norm(IdentifierKind::Email, "Jo <jo@x.com> (work)").unwrap(), "jo@x.com");
    }
    #[test]
    fn spellings_of_one_unicode_address_are_one_identifier() {
        // Composed and decomposed é, upper and lower case, the IDN domain and its punycode.
        for v in [
            "jos\u{e9}@b\u{fc}cher.de",
            "jose\u{301}@bu\u{308}cher.de",
            "JOS\u{c9}@B\u{dc}CHER.DE",
            "Jos\u{e9} <jos\u{e9}@xn--bcher-kva.de>",
            "jos\u{e9}@XN--BCHER-KVA.DE",
        ] {
            assert_eq!(norm(IdentifierKind::Email, v).unwrap(), "jos\u{e9}@xn--bcher-kva.de", "{v:?}");
        }
        assert_eq!(norm(IdentifierKind::Email, "jo@M\u{dc}NCHEN.de").unwrap(), "jo@xn--mnchen-3ya.de");
        let cyrillic =
            norm(IdentifierKind::Email, "jo@\u{41f}\u{420}\u{418}\u{41c}\u{415}\u{420}.\u{420}\u{424}").unwrap();
        assert_eq!(
            cyrillic,
            norm(IdentifierKind::Email, "jo@\u{43f}\u{440}\u{438}\u{43c}\u{435}\u{440}.\u{440}\u{444}").unwrap()
        );
        assert!(cyrillic.is_ascii() && cyrillic.ends_with(".xn--p1ai"), "{cyrillic}");
        assert_eq!(
            norm(IdentifierKind::Email, "\u{39f}\u{394}\u{39f}\u{3a3}@x.com").unwrap(),
            "\u{3bf}\u{3b4}\u{3bf}\u{3c2}@x.com"
        );
        assert_eq!(norm(IdentifierKind::Email, "jo@xn--zz.com"), Err(NormalizeError::InvalidEmail));
    }
    #[test]
    fn compatibility_spellings_of_an_address_are_one_identifier() {
        // Fullwidth forms (typed in an East Asian input mode) and ligatures are their plain
        // letters, in the local part as in the domain, the separator included.
        for v in [
            "\u{ff4a}\u{ff4f}@x.com",
            "\u{ff2a}\u{ff2f}@X.COM",
            "\u{ff4a}\u{ff4f}\u{ff20}\u{ff58}\u{ff0e}\u{ff43}\u{ff4f}\u{ff4d}",
            "Jo <\u{ff4a}\u{ff4f}@x.com>",
            "\u{ff2a}\u{ff4f} \u{ff1c}jo@x.com\u{ff1e}",
        ] {
            assert_eq!(norm(IdentifierKind::Email, v).unwrap(), "jo@x.com", "{v:?}");
        }
        assert_eq!(norm(IdentifierKind::Email, "\u{fb01}ona@x.com").unwrap(), "fiona@x.com");
        assert_eq!(norm(IdentifierKind::Email, "\u{1d2c}nn@x.com").unwrap(), "ann@x.com");
        assert_eq!(
            norm(IdentifierKind::Email, "jos\u{e9}\u{ff20}b\u{fc}cher.de").unwrap(),
            "jos\u{e9}@xn--bcher-kva.de"
        );
        // What the mapping makes of a value is checked as the value: a space, a second `@`.
        for v in ["jo\u{a8}@x.com", "a\u{fe6b}b@x.com", "jo\u{ff20}\u{ff20}x.com"] {
            assert_eq!(norm(IdentifierKind::Email, v), Err(NormalizeError::InvalidEmail), "{v:?}");
        }
        // The limit of 64 counts the canonical local part.
        let wide = "\u{ff41}".repeat(64);
        assert_eq!(norm(IdentifierKind::Email, &format!("{wide}@x.com")).unwrap(), format!("{}@x.com", "a".repeat(64)));
        assert_eq!(norm(IdentifierKind::Email, &format!("{wide}\u{ff41}@x.com")), Err(NormalizeError::InvalidEmail));
    }
    #[test]
    fn every_code_point_in_a_local_part_normalizes_to_a_fixed_point() {
        let mut checked = 0;
        for c in (0..=0x10_ffffu32).filter_map(char::from_u32).filter(|c| !c.is_ascii()) {
            let v = format!("a{c}b@x.com");
            if let Ok(once) = normalize_email(&v) {
                assert_eq!(normalize_email(&once).as_ref(), Ok(&once), "U+{:04X}", c as u32);
                checked += 1;
            }
        }
        assert!(checked > 200_000, "{checked}");
    }
}
