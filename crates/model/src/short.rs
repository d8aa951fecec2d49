//! Short text kept inline: most event ids, case keys and identifier values fit, so keeping one
//! allocates nothing and reading it follows no pointer.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// Text of up to `N` bytes (at most 255) kept inline, longer text shared. Compares, orders and
/// hashes as the text. Unlike [`CompactString`](crate::CompactString) (24 bytes inline, longer
/// text copied on clone), a clone never allocates: for state that copies keys around.
#[derive(Clone)]
pub enum ShortStr<const N: usize> {
    /// The first `len` bytes of `bytes`, copied from a whole `str`.
    Inline {
        /// Length in bytes.
        len: u8,
        /// The text, zero-padded.
        bytes: [u8; N],
    },
    /// Longer text.
    Shared(Arc<str>),
}

impl<const N: usize> ShortStr<N> {
    /// Keeps `s`.
    pub fn new(s: &str) -> Self {
        const { assert!(N <= u8::MAX as usize, "the inline length is a u8") };
        if s.len() <= N {
            let mut bytes = [0u8; N];
            bytes[..s.len()].copy_from_slice(s.as_bytes());
            ShortStr::Inline { len: s.len() as u8, bytes }
        } else {
            ShortStr::Shared(Arc::from(s))
        }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        match self {
            // Copied from a whole `str`: valid UTF-8 (the fallback is never taken).
            ShortStr::Inline { len, bytes } => std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default(),
            ShortStr::Shared(s) => s,
        }
    }

    /// The text's bytes (no UTF-8 check).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            ShortStr::Inline { len, bytes } => &bytes[..usize::from(*len)],
            ShortStr::Shared(s) => s.as_bytes(),
        }
    }

    /// Heap bytes held (counts and allocator overhead as 32 bytes), for memory accounting.
    pub fn heap_bytes(&self) -> usize {
        match self {
            ShortStr::Inline { .. } => 0,
            ShortStr::Shared(s) => s.len().div_ceil(8) * 8 + 32,
        }
    }
}

impl<const N: usize> std::ops::Deref for ShortStr<N> {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl<const N: usize> fmt::Debug for ShortStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<const N: usize> fmt::Display for ShortStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> PartialEq for ShortStr<N> {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl<const N: usize> Eq for ShortStr<N> {}

impl<const N: usize> PartialOrd for ShortStr<N> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<const N: usize> Ord for ShortStr<N> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl<const N: usize> Hash for ShortStr<N> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

/// Serialized as its text.
impl<const N: usize> serde::Serialize for ShortStr<N> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Read back from its text (inline again when short).
impl<'de, const N: usize> serde::Deserialize<'de> for ShortStr<N> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(ShortStr::new(&s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_inline_and_shared() {
        for s in ["", "+14155550134", "jo.lee@example.com", "a-rather-long-address@example.com", "ünïcödé@例え.jp"]
        {
            let v = ShortStr::<22>::new(s);
            assert_eq!((v.as_str(), v.as_bytes()), (s, s.as_bytes()));
            assert_eq!(matches!(v, ShortStr::Inline { .. }), s.len() <= 22, "{s}");
            assert_eq!(v, ShortStr::<22>::new(s));
        }
        assert!(ShortStr::<22>::new("a") < ShortStr::<22>::new("a-rather-long-address@example.com"));
        assert!(std::mem::size_of::<ShortStr<22>>() <= 24);
    }
}
