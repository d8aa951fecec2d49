//! Conversation threading across channels: by case id first, then by reply chains.

use hashbrown::HashMap;
use std::sync::{Arc, OnceLock};

use omnistitch_model::{Event, EventTime};
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// A conversation thread; once a case id absorbs it, it points at the case's thread.
#[derive(Debug)]
struct Thread {
    id: Arc<str>,
    /// Set once, when a case id re-threads this conversation.
    absorbed_by: OnceLock<Arc<Thread>>,
}

impl Thread {
    fn new(id: Arc<str>) -> Arc<Thread> {
        Arc::new(Thread { id, absorbed_by: OnceLock::new() })
    }

    /// The thread this one ended up in (itself unless absorbed).
    fn current(self: &Arc<Thread>) -> &Arc<Thread> {
        let mut t = self;
        while let Some(next) = t.absorbed_by.get() {
            t = next;
        }
        t
    }
}

/// Numbers threads for a snapshot: each thread once (entries and keys share them, and a
/// re-threading must reach all of them after a restore), the one that absorbed it first.
#[derive(Default)]
pub(crate) struct ThreadNumbers {
    /// By address.
    numbers: HashMap<usize, u32>,
    /// The last thread numbered (address, number): a timeline's entries mostly follow one
    /// thread after another.
    last: Option<(usize, u32)>,
    /// Each thread's id and the number of the thread that absorbed it.
    pub(crate) table: Vec<(Arc<str>, Option<u32>)>,
}

impl ThreadNumbers {
    fn of(&mut self, t: &Arc<Thread>) -> u32 {
        let at = Arc::as_ptr(t) as usize;
        if let Some((_, n)) = self.last.filter(|&(last, _)| last == at) {
            return n;
        }
        if let Some(&n) = self.numbers.get(&at) {
            self.last = Some((at, n));
            return n;
        }
        // Case threads absorb and are never absorbed: the recursion is one level deep.
        let absorber = t.absorbed_by.get().map(|a| self.of(a));
        let n = u32::try_from(self.table.len()).expect("fewer than 2^32 threads");
        self.table.push((t.id.clone(), absorber));
        self.numbers.insert(at, n);
        self.last = Some((at, n));
        n
    }

    /// The number of `handle`'s thread.
    pub(crate) fn handle(&mut self, handle: &ThreadHandle) -> u32 {
        self.of(&handle.0)
    }
}

/// Threads read back from a snapshot's [`ThreadNumbers::table`].
pub(crate) struct ThreadTable(Vec<Arc<Thread>>);

impl ThreadTable {
    /// Threads of `table`, each pointing at the (earlier) one that absorbed it. Only case
    /// threads absorb, and they are never absorbed: a thread absorbed by an absorbed one is
    /// refused (a chain would make numbering and dropping the threads recurse along it).
    pub(crate) fn new(table: Vec<(Arc<str>, Option<u32>)>) -> Result<Self, &'static str> {
        let mut threads: Vec<Arc<Thread>> = Vec::with_capacity(table.len());
        for (id, absorber) in table {
            let t = Thread::new(id);
            if let Some(a) = absorber {
                let a = threads.get(a as usize).ok_or("a thread absorbed by an unknown thread")?;
                if a.absorbed_by.get().is_some() {
                    return Err("a thread absorbed by an absorbed thread");
                }
                let _ = t.absorbed_by.set(a.clone());
            }
            threads.push(t);
        }
        Ok(ThreadTable(threads))
    }

    fn thread(&self, n: u32) -> Result<&Arc<Thread>, &'static str> {
        self.0.get(n as usize).ok_or("an unknown thread")
    }

    /// A handle to thread `n`.
    pub(crate) fn handle(&self, n: u32) -> Result<ThreadHandle, &'static str> {
        Ok(ThreadHandle(self.thread(n)?.clone()))
    }
}

/// A conversation thread as a timeline entry holds it: its id is the thread the conversation
/// is in now, so an entry of a conversation a case id re-threaded later, on any profile, reads
/// the case's thread without being rewritten.
#[derive(Clone)]
pub struct ThreadHandle(Arc<Thread>);

impl ThreadHandle {
    /// The id of the thread the conversation is in now.
    pub fn id(&self) -> &Arc<str> {
        &self.0.current().id
    }
}

impl std::fmt::Debug for ThreadHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ThreadHandle").field(self.id()).finish()
    }
}

impl PartialEq for ThreadHandle {
    fn eq(&self, other: &Self) -> bool {
        self.id() == other.id()
    }
}

/// Maps conversation keys (message ids, chat sessions, calls, posts, cases) to thread ids.
///
/// Keys are kept as 64-bit digests: threading needs no key back, and a collision (about one
/// in 10^7 at a million live keys) would only put one event in a neighbouring thread. An
/// absorbed thread points at its absorber, so following a key costs one probe and no hashing
/// of thread ids; absorbed threads live as long as a key still names them.
#[derive(Debug, Default)]
pub struct ThreadIndex {
    keys: HashMap<u64, (Arc<Thread>, EventTime)>,
}

/// The thread an event joined.
#[derive(Debug, Clone, PartialEq)]
pub struct Threaded {
    /// The event's thread id now.
    pub thread: Arc<str>,
    /// The thread, as its entries hold it.
    pub handle: ThreadHandle,
    /// The thread this event's case id took its conversation from (the conversation's earlier
    /// events, on any profile, are in `thread` now).
    pub absorbed: Option<Arc<str>>,
}

/// Prefix of the threads of case ids.
const CASE_THREAD: &str = "case:";

/// Seed of case-id digests, so that a case id never collides with a conversation key.
const CASE_SEED: u64 = 0x6361_7365_3a00_0001;

fn case_digest(case: &str) -> u64 {
    xxh3_64_with_seed(case.as_bytes(), CASE_SEED)
}

fn prefixed(prefix: &str, name: &str) -> Arc<str> {
    let mut s = String::with_capacity(prefix.len() + name.len());
    s.push_str(prefix);
    s.push_str(name);
    Arc::from(s)
}

impl ThreadIndex {
    /// Keys remembered.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn lookup(&self, key: u64) -> Option<Arc<Thread>> {
        self.keys.get(&key).map(|(t, _)| t.current().clone())
    }

    /// Threads `event` (of `tenant`, whose keys are namespaced by the caller) and remembers its keys.
    ///
    /// A case id wins: the chat, call and emails of one case form one thread. Otherwise an event
    /// joins the thread of the message it replies to, or of its own conversation, or starts one.
    pub fn assign(&mut self, event: &Event) -> Threaded {
        let own = event.thread.key.as_deref().map(|k| (k, xxh3_64(k.as_bytes())));
        let parent = event.thread.parent.as_deref().map(|p| xxh3_64(p.as_bytes()));
        let before = own.and_then(|(_, k)| self.lookup(k)).or_else(|| parent.and_then(|k| self.lookup(k)));
        let case_key = event.case_id.as_deref().map(|c| (c, case_digest(c)));
        let thread: Arc<Thread> = match case_key {
            Some((case, key)) => self.lookup(key).unwrap_or_else(|| Thread::new(prefixed(CASE_THREAD, case))),
            None => match &before {
                Some(t) => t.clone(),
                None => match own {
                    Some((k, _)) => Thread::new(Arc::from(k)),
                    None => Thread::new(prefixed("event:", &event.event_id)),
                },
            },
        };
        for key in [case_key.map(|c| c.1), own.map(|o| o.1), parent].into_iter().flatten() {
            self.remember(key, &thread, event.time);
        }
        // A conversation threaded on its own until now joins the case; one already in another
        // case does not take that case along (a reply from ticket X to a ticket-Y message, a
        // reopened old thread): two cases never become one, only this event's keys move.
        let absorbed = before.filter(|b| b.id != thread.id && !b.id.starts_with(CASE_THREAD)).map(|old| {
            // Other keys of the re-threaded conversation, and the entries of its earlier events
            // on every profile, follow it through the absorbed thread.
            let _ = old.absorbed_by.set(thread.clone());
            old.id.clone()
        });
        Threaded { thread: thread.id.clone(), handle: ThreadHandle(thread), absorbed }
    }

    fn remember(&mut self, key: u64, thread: &Arc<Thread>, t: EventTime) {
        match self.keys.get_mut(&key) {
            Some(slot) => {
                if !Arc::ptr_eq(&slot.0, thread) {
                    slot.0 = thread.clone();
                }
                slot.1 = slot.1.max(t);
            }
            None => {
                self.keys.insert(key, (thread.clone(), t));
            }
        }
    }

    /// The keys, each with its thread's number in `numbers` (for a snapshot).
    pub(crate) fn numbered_keys(&self, numbers: &mut ThreadNumbers) -> Vec<(u64, u32, EventTime)> {
        self.keys.iter().map(|(&k, (t, last))| (k, numbers.of(t), *last)).collect()
    }

    /// An index of `keys` (as [`ThreadIndex::numbered_keys`] wrote them), threads from `table`.
    pub(crate) fn from_numbered(keys: Vec<(u64, u32, EventTime)>, table: &ThreadTable) -> Result<Self, &'static str> {
        let mut index = HashMap::with_capacity(keys.len());
        for (k, n, last) in keys {
            index.insert(k, (table.thread(n)?.clone(), last));
        }
        Ok(ThreadIndex { keys: index })
    }

    /// Forgets keys last used before `cutoff`; returns how many.
    pub fn evict_before(&mut self, cutoff: EventTime) -> usize {
        let before = self.keys.len();
        self.keys.retain(|_, (_, last)| *last >= cutoff);
        before - self.keys.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_table_read_back_refuses_threads_absorbed_along_a_chain() {
        let id = |s: &str| Arc::<str>::from(s);
        let table = ThreadTable::new(vec![(id("case:1"), None), (id("m1"), Some(0)), (id("m2"), Some(0))]);
        assert!(table.is_ok_and(|t| t.handle(2).is_ok_and(|h| &**h.id() == "case:1")));
        let chain = ThreadTable::new(vec![(id("case:1"), None), (id("m1"), Some(0)), (id("m2"), Some(1))]);
        assert_eq!(chain.err(), Some("a thread absorbed by an absorbed thread"));
        assert_eq!(ThreadTable::new(vec![(id("m1"), Some(0))]).err(), Some("a thread absorbed by an unknown thread"));
    }
}
