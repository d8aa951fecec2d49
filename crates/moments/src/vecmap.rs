//! Small ordered maps and sets in one sorted vector: a profile holds a handful of
//! conversations, cases and timers, and a `BTreeMap` node per profile costs a kilobyte or more.
//!
//! Iteration is in key order, as with `BTreeMap`, so switching between them changes no output.

use std::borrow::Borrow;

/// An ordered map in a sorted vector; binary search to find, shifts to insert. Read back
/// (from a snapshot) only in strictly increasing key order, which the searches rely on.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(try_from = "Vec<(K, V)>", bound(deserialize = "K: Ord + serde::Deserialize<'de>, V: serde::Deserialize<'de>"))]
pub(crate) struct VecMap<K, V> {
    entries: Vec<(K, V)>,
}

/// Written as its entries, in key order.
impl<K: serde::Serialize, V: serde::Serialize> serde::Serialize for VecMap<K, V> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.entries.serialize(s)
    }
}

impl<K: Ord, V> TryFrom<Vec<(K, V)>> for VecMap<K, V> {
    type Error = &'static str;
    fn try_from(entries: Vec<(K, V)>) -> Result<Self, Self::Error> {
        match entries.windows(2).all(|w| w[0].0 < w[1].0) {
            true => Ok(VecMap { entries }),
            false => Err("map keys out of order"),
        }
    }
}

impl<K, V> Default for VecMap<K, V> {
    fn default() -> Self {
        VecMap { entries: Vec::new() }
    }
}

/// Room for one more item in `items`: most profiles hold one case, one conversation, one
/// timer, so the first item gets room for itself alone (a `Vec` would make room for four).
fn make_room<T>(items: &mut Vec<T>) {
    if items.capacity() == 0 {
        items.reserve_exact(1);
    }
}

impl<K: Ord, V> VecMap<K, V> {
    fn find<Q: Ord + ?Sized>(&self, key: &Q) -> Result<usize, usize>
    where
        K: Borrow<Q>,
    {
        self.entries.binary_search_by(|(k, _)| k.borrow().cmp(key))
    }

    /// Entries held.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The value of `key`.
    pub(crate) fn get<Q: Ord + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.find(key).ok().map(|i| &self.entries[i].1)
    }

    /// The value of `key`, mutable.
    pub(crate) fn get_mut<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        self.find(key).ok().map(|i| &mut self.entries[i].1)
    }

    /// Whether `key` has a value.
    pub(crate) fn contains_key<Q: Ord + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.find(key).is_ok()
    }

    /// Sets the value of `key`; returns the one it replaced.
    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                make_room(&mut self.entries);
                self.entries.insert(i, (key, value));
                None
            }
        }
    }

    /// The value of `key`, inserted from `make` (given the key) when missing.
    pub(crate) fn get_or_insert_with<Q: Ord + ?Sized>(&mut self, key: &Q, make: impl FnOnce() -> (K, V)) -> &mut V
    where
        K: Borrow<Q>,
    {
        let i = match self.find(key) {
            Ok(i) => i,
            Err(i) => {
                make_room(&mut self.entries);
                self.entries.insert(i, make());
                i
            }
        };
        &mut self.entries[i].1
    }

    /// Takes out the value of `key`.
    pub(crate) fn remove<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        self.find(key).ok().map(|i| self.entries.remove(i).1)
    }

    /// Entries in key order.
    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = (&K, &V)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    /// Values in key order.
    pub(crate) fn values(&self) -> impl DoubleEndedIterator<Item = &V> {
        self.entries.iter().map(|(_, v)| v)
    }

    /// Values in key order, mutable.
    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.entries.iter_mut().map(|(_, v)| v)
    }

    /// Keeps the entries `keep` says yes to.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        self.entries.retain_mut(|(k, v)| keep(k, v));
    }

    /// The largest key, when any.
    pub(crate) fn last_key(&self) -> Option<&K> {
        self.entries.last().map(|(k, _)| k)
    }

    /// Appends an entry whose key is larger than every key held (checked: else inserted).
    pub(crate) fn push_last(&mut self, key: K, value: V) {
        if self.last_key().is_none_or(|last| *last < key) {
            make_room(&mut self.entries);
            self.entries.push((key, value));
        } else {
            self.insert(key, value);
        }
    }
}

impl<K, V> IntoIterator for VecMap<K, V> {
    type Item = (K, V);
    type IntoIter = std::vec::IntoIter<(K, V)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

/// An ordered set in a sorted vector. Read back only in strictly increasing order.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(try_from = "Vec<T>", bound(deserialize = "T: Ord + serde::Deserialize<'de>"))]
pub(crate) struct VecSet<T> {
    items: Vec<T>,
}

/// Written as its items, in order.
impl<T: serde::Serialize> serde::Serialize for VecSet<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.items.serialize(s)
    }
}

impl<T: Ord> TryFrom<Vec<T>> for VecSet<T> {
    type Error = &'static str;
    fn try_from(items: Vec<T>) -> Result<Self, Self::Error> {
        match items.windows(2).all(|w| w[0] < w[1]) {
            true => Ok(VecSet { items }),
            false => Err("set items out of order"),
        }
    }
}

impl<T> Default for VecSet<T> {
    fn default() -> Self {
        VecSet { items: Vec::new() }
    }
}

impl<T: Ord> VecSet<T> {
    /// Adds `item`; false when it was there.
    pub(crate) fn insert(&mut self, item: T) -> bool {
        match self.items.binary_search(&item) {
            Ok(_) => false,
            Err(i) => {
                make_room(&mut self.items);
                self.items.insert(i, item);
                true
            }
        }
    }

    /// Takes out `item`; false when it was not there.
    pub(crate) fn remove(&mut self, item: &T) -> bool {
        match self.items.binary_search(item) {
            Ok(i) => {
                self.items.remove(i);
                true
            }
            Err(_) => false,
        }
    }

    /// Items in order.
    pub(crate) fn iter(&self) -> std::slice::Iter<'_, T> {
        self.items.iter()
    }

    /// Moves every item of `other` in.
    pub(crate) fn append(&mut self, other: &mut VecSet<T>) {
        for item in other.items.drain(..) {
            self.insert(item);
        }
    }
}

impl<'a, T> IntoIterator for &'a VecSet<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_keeps_key_order_and_replaces() {
        let mut m = VecMap::default();
        for (k, v) in [(3, "c"), (1, "a"), (2, "b"), (1, "A")] {
            m.insert(k, v);
        }
        assert_eq!(m.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>(), [(1, "A"), (2, "b"), (3, "c")]);
        assert_eq!(m.remove(&2), Some("b"));
        assert_eq!(*m.get_or_insert_with(&0, || (0, "z")), "z");
        m.push_last(9, "i");
        m.push_last(5, "e");
        m.retain(|k, _| *k != 3);
        assert_eq!(m.iter().map(|(k, _)| *k).collect::<Vec<_>>(), [0, 1, 5, 9]);
    }

    #[test]
    fn set_holds_each_item_once() {
        let (mut a, mut b) = (VecSet::default(), VecSet::default());
        assert!(a.insert(2) && a.insert(1) && !a.insert(2));
        b.insert(3);
        b.insert(1);
        a.append(&mut b);
        assert_eq!(a.iter().copied().collect::<Vec<_>>(), [1, 2, 3]);
        assert!(a.remove(&2) && !a.remove(&2));
        assert_eq!(b.iter().count(), 0);
    }

    /// Read back, maps and sets keep their order; out of order (a damaged snapshot), they are
    /// refused rather than searched wrong.
    #[test]
    fn maps_and_sets_read_back_only_in_order() {
        let mut m = VecMap::default();
        for k in [3u32, 1, 2] {
            m.insert(k, k * 10);
        }
        let back: VecMap<u32, u32> = postcard::from_bytes(&postcard::to_allocvec(&m).unwrap()).unwrap();
        assert_eq!(back.get(&2), Some(&20));
        let unordered = postcard::to_allocvec(&vec![(2u32, 0u32), (1, 0)]).unwrap();
        assert!(postcard::from_bytes::<VecMap<u32, u32>>(&unordered).is_err());
        let twice = postcard::to_allocvec(&vec![1u32, 1]).unwrap();
        assert!(postcard::from_bytes::<VecSet<u32>>(&twice).is_err());
        assert!(postcard::from_bytes::<VecSet<u32>>(&postcard::to_allocvec(&vec![1u32, 2]).unwrap()).is_ok());
    }
}
