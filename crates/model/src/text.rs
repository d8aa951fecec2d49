//! Text helpers on the hot path of decoding and normalization.

/// `s.trim()`, answered without decoding a character when both ends are ASCII and not
/// whitespace (as nearly every identifier and id is): `str::trim` walks both ends one Unicode
/// character at a time, which cost more than the rest of reading a short field.
pub fn trim(s: &str) -> &str {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(&first), Some(&last)) if solid_ascii(first) && solid_ascii(last) => s,
        _ => s.trim(),
    }
}

/// An ASCII byte that is not whitespace as `char::is_whitespace` reads it.
fn solid_ascii(b: u8) -> bool {
    b.is_ascii() && !char::from(b).is_whitespace()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_exactly_as_str_trim() {
        let cases = [
            "",
            " ",
            "a",
            " a",
            "a ",
            "\u{b}a\u{b}",
            "\u{c}a",
            "a\r\n",
            "\u{a0}a",
            "a\u{a0}",
            "\u{3000}a\u{2009}",
            "é",
            " é ",
            "aé",
            "éa",
            "\u{85}a",
            "a\u{85}",
            "\u{1680}",
            "jo@x.com",
            "\tjo@x.com\t",
            "a b",
        ];
        for s in cases {
            assert_eq!(trim(s), s.trim(), "{s:?}");
        }
    }
}
