//! Event ids and case keys as the detector keeps them: 24 bytes, no allocation for the common
//! shapes. Text up to 22 bytes is inline; a canonical lowercase UUID (36 characters) is kept as
//! its 16 bytes; anything else is shared. Compares and orders as the text, so which shape a
//! key has never changes an outcome.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

/// Longest text kept inline.
const INLINE: usize = 22;
/// Length of a UUID's text.
const UUID_LEN: usize = 36;
/// Where a UUID's text has its hyphens.
const HYPHENS: [usize; 4] = [8, 13, 18, 23];

/// A short key: an event id, or a case key.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) enum KeyText {
    /// The first `len` bytes of `bytes`.
    Inline { len: u8, bytes: [u8; INLINE] },
    /// A canonical lowercase UUID: its 32 hex digits as 16 bytes.
    Uuid([u8; 16]),
    /// Other text.
    Shared(Arc<str>),
}

/// The digit value of a lowercase hex character.
fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// The 16 bytes of `s` when it is a canonical lowercase UUID (`8-4-4-4-12` hex digits).
fn uuid_bytes(s: &[u8]) -> Option<[u8; 16]> {
    if s.len() != UUID_LEN || HYPHENS.iter().any(|&i| s[i] != b'-') {
        return None;
    }
    let mut out = [0u8; 16];
    let mut digits = s.iter().enumerate().filter(|(i, _)| !HYPHENS.contains(i)).map(|(_, c)| hex_value(*c));
    for byte in &mut out {
        let (hi, lo) = (digits.next()??, digits.next()??);
        *byte = hi << 4 | lo;
    }
    Some(out)
}

/// The text of a UUID kept as bytes.
fn uuid_text(bytes: &[u8; 16]) -> [u8; UUID_LEN] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [b'-'; UUID_LEN];
    let mut at = 0;
    for byte in bytes {
        for digit in [byte >> 4, byte & 0xf] {
            if HYPHENS.contains(&at) {
                at += 1;
            }
            out[at] = HEX[usize::from(digit)];
            at += 1;
        }
    }
    out
}

/// A key's text, borrowed or (for a UUID) spelled out on the stack.
pub(crate) enum Text<'a> {
    Borrowed(&'a [u8]),
    Uuid([u8; UUID_LEN]),
}

impl Text<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            Text::Borrowed(b) => b,
            Text::Uuid(b) => b,
        }
    }
}

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        // Both shapes hold bytes copied from a `str` or spelled in ASCII: the fallback is
        // never taken.
        std::str::from_utf8(self.bytes()).unwrap_or_default()
    }
}

impl KeyText {
    /// Keeps `s`.
    pub(crate) fn new(s: &str) -> Self {
        if s.len() <= INLINE {
            let mut bytes = [0u8; INLINE];
            bytes[..s.len()].copy_from_slice(s.as_bytes());
            // At most INLINE (22) bytes: fits a u8.
            return KeyText::Inline { len: s.len() as u8, bytes };
        }
        match uuid_bytes(s.as_bytes()) {
            Some(b) => KeyText::Uuid(b),
            None => KeyText::Shared(Arc::from(s)),
        }
    }

    /// The text.
    pub(crate) fn text(&self) -> Text<'_> {
        match self {
            KeyText::Inline { len, bytes } => Text::Borrowed(&bytes[..usize::from(*len)]),
            KeyText::Uuid(b) => Text::Uuid(uuid_text(b)),
            KeyText::Shared(s) => Text::Borrowed(s.as_bytes()),
        }
    }

    /// Whether the text starts with `prefix`.
    pub(crate) fn starts_with(&self, prefix: &str) -> bool {
        self.text().bytes().starts_with(prefix.as_bytes())
    }
}

/// Written as its text.
impl serde::Serialize for KeyText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text())
    }
}

/// Read back from its text, in the shape [`KeyText::new`] gives it.
impl<'de> serde::Deserialize<'de> for KeyText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(KeyText::new(&s))
    }
}

impl PartialOrd for KeyText {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for KeyText {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            // Lowercase hex digits order as their values, hyphens sit at the same places.
            (KeyText::Uuid(a), KeyText::Uuid(b)) => a.cmp(b),
            (KeyText::Inline { len: la, bytes: a }, KeyText::Inline { len: lb, bytes: b }) => {
                a[..usize::from(*la)].cmp(&b[..usize::from(*lb)])
            }
            _ => self.text().bytes().cmp(other.text().bytes()),
        }
    }
}

impl PartialEq<str> for KeyText {
    fn eq(&self, other: &str) -> bool {
        self.text().bytes() == other.as_bytes()
    }
}

impl fmt::Display for KeyText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

impl fmt::Debug for KeyText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.text(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";

    #[test]
    fn it_is_24_bytes() {
        assert_eq!(std::mem::size_of::<KeyText>(), 24);
    }

    #[test]
    fn text_round_trips_in_every_shape() {
        let long = "case:a-case-id-longer-than-the-inline-room";
        for (s, shape) in
            [("", 'i'), ("ev-00000042", 'i'), (UUID, 'u'), (long, 's'), ("0F8FAD5B-D9CB-469F-A165-70867728950E", 's')]
        {
            let k = KeyText::new(s);
            let got = match k {
                KeyText::Inline { .. } => 'i',
                KeyText::Uuid(_) => 'u',
                KeyText::Shared(_) => 's',
            };
            assert_eq!((got, &*k.text(), k.to_string()), (shape, s, s.to_string()), "{s}");
            assert_eq!(k, KeyText::new(s));
            assert!(k == *s);
        }
    }

    #[test]
    fn near_uuids_are_kept_as_text() {
        for s in [
            "0f8fad5b-d9cb-469f-a165-70867728950",
            "0f8fad5b-d9cb-469f-a165_70867728950e",
            "0f8fad5b-d9cb-469f-a165-70867728950g",
        ] {
            let k = KeyText::new(s);
            assert!(!matches!(k, KeyText::Uuid(_)), "{s}");
            assert_eq!(&*k.text(), s);
        }
    }

    #[test]
    fn order_is_the_order_of_the_text_across_shapes() {
        let texts = [
            "",
            "0",
            "0f8fad5b-d9cb-469f-a165-70867728950e",
            "0f8fad5b-d9cb-469f-a165-70867728950f",
            "0f8fad5b-d9cb-469f-a165-70867728950e-and-more",
            "0f8fad5b",
            "1f8fad5b-d9cb-469f-a165-70867728950e",
            "ev-00000001",
            "ev-00000002",
            "ffffffff-ffff-ffff-ffff-ffffffffffff",
            "a-rather-long-event-id-that-is-shared",
            "z",
        ];
        for a in texts {
            for b in texts {
                assert_eq!(KeyText::new(a).cmp(&KeyText::new(b)), a.cmp(b), "{a} vs {b}");
                assert_eq!(KeyText::new(a) == KeyText::new(b), a == b, "{a} vs {b}");
            }
        }
    }
}
