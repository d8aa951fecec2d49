//! Identifier values as the graph stores them: short values inline, longer ones on the heap.

/// Longest value stored inline.
const INLINE: usize = 22;

/// An identifier value. Values up to 22 bytes (most phones, handles, visitor and account ids,
/// many emails) take no allocation, and comparing them follows no pointer: a lookup that hits
/// reads the table entry only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    /// Up to [`INLINE`] bytes of UTF-8, the first `len` of `bytes`.
    Inline { len: u8, bytes: [u8; INLINE] },
    /// A longer value.
    Heap(Box<str>),
}

impl Value {
    /// Stores `s`.
    pub(crate) fn new(s: &str) -> Self {
        if s.len() <= INLINE {
            let mut bytes = [0u8; INLINE];
            bytes[..s.len()].copy_from_slice(s.as_bytes());
            Value::Inline { len: s.len() as u8, bytes }
        } else {
            Value::Heap(s.into())
        }
    }

    /// The value's bytes.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            Value::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Value::Heap(s) => s.as_bytes(),
        }
    }

    /// The value as an owned string.
    pub(crate) fn to_boxed_str(&self) -> Box<str> {
        match self {
            Value::Heap(s) => s.clone(),
            Value::Inline { .. } => std::str::from_utf8(self.as_bytes()).expect("stored from a str").into(),
        }
    }

    /// Heap bytes held (allocator overhead counted as 16 bytes), for memory accounting.
    pub(crate) fn heap_bytes(&self) -> usize {
        match self {
            Value::Inline { .. } => 0,
            Value::Heap(s) => s.len().div_ceil(8) * 8 + 16,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_inline_and_on_the_heap() {
        for s in ["", "+14155550134", "jo.lee@example.com", "a-rather-long-address@example.com", "ünïcödé@例え.jp"]
        {
            let v = Value::new(s);
            assert_eq!(v.as_bytes(), s.as_bytes());
            assert_eq!(&*v.to_boxed_str(), s);
            assert_eq!(matches!(v, Value::Inline { .. }), s.len() <= INLINE, "{s}");
        }
        assert!(std::mem::size_of::<Value>() <= 24);
    }
}
