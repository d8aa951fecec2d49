//! Conversation threading across channels: by case id first, then by reply chains.

use hashbrown::{HashMap, HashSet};
use std::sync::Arc;

use omnistitch_model::{Event, EventTime};
use xxhash_rust::xxh3::{xxh3_64, Xxh3};

/// Maps conversation keys (message ids, chat sessions, calls, posts, cases) to thread ids.
///
/// Keys are kept as 64-bit digests: threading needs no key back, and a collision (about one
/// in 10^7 at a million live keys) would only put one event in a neighbouring thread.
#[derive(Debug, Default)]
pub struct ThreadIndex {
    threads: HashMap<u64, (Arc<str>, EventTime)>,
    /// Threads that a case id absorbed, pointing at the case's thread.
    aliases: HashMap<Arc<str>, Arc<str>>,
}

/// The thread an event joined, and the thread it replaced if a case id re-threaded its conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Threaded {
    /// The event's thread.
    pub thread: Arc<str>,
    /// The thread its conversation had before (now an alias of `thread`).
    pub replaced: Option<Arc<str>>,
}

impl ThreadIndex {
    /// Keys remembered.
    pub fn len(&self) -> usize {
        self.threads.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.threads.is_empty()
    }

    fn lookup(&self, key: u64) -> Option<Arc<str>> {
        let mut thread = self.threads.get(&key).map(|(t, _)| t.clone())?;
        while let Some(next) = self.aliases.get(&thread) {
            thread = next.clone();
        }
        Some(thread)
    }

    /// Threads `event` (of `tenant`, whose keys are namespaced by the caller) and remembers its keys.
    ///
    /// A case id wins: the chat, call and emails of one case form one thread. Otherwise an event
    /// joins the thread of the message it replies to, or of its own conversation, or starts one.
    pub fn assign(&mut self, event: &Event) -> Threaded {
        let own = event.thread.key.as_deref().map(|k| (k, xxh3_64(k.as_bytes())));
        let parent = event.thread.parent.as_deref().map(xxh3_64_str);
        let before = own.and_then(|(_, k)| self.lookup(k)).or_else(|| parent.and_then(|k| self.lookup(k)));
        let case_key = event.case_id.as_deref().map(|c| {
            let mut h = Xxh3::new();
            h.update(b"case:");
            h.update(c.as_bytes());
            (c, h.digest())
        });
        let thread: Arc<str> = match case_key {
            Some((case, key)) => self.lookup(key).unwrap_or_else(|| Arc::from(format!("case:{case}"))),
            None => match &before {
                Some(t) => t.clone(),
                None => match own {
                    Some((k, _)) => Arc::from(k),
                    None => Arc::from(format!("event:{}", event.event_id)),
                },
            },
        };
        for key in [case_key.map(|c| c.1), own.map(|o| o.1), parent].into_iter().flatten() {
            self.remember(key, &thread, event.time);
        }
        let replaced = before.filter(|b| *b != thread);
        if let Some(old) = &replaced {
            // Other keys of the re-threaded conversation follow it through the alias.
            self.aliases.insert(old.clone(), thread.clone());
        }
        Threaded { thread, replaced }
    }

    fn remember(&mut self, key: u64, thread: &Arc<str>, t: EventTime) {
        match self.threads.get_mut(&key) {
            Some(slot) => {
                if slot.0 != *thread {
                    slot.0 = thread.clone();
                }
                slot.1 = slot.1.max(t);
            }
            None => {
                self.threads.insert(key, (thread.clone(), t));
            }
        }
    }

    /// Forgets keys last used before `cutoff`; returns how many.
    pub fn evict_before(&mut self, cutoff: EventTime) -> usize {
        let before = self.threads.len();
        self.threads.retain(|_, (_, last)| *last >= cutoff);
        let live: HashSet<&Arc<str>> = self.threads.values().map(|(t, _)| t).collect();
        self.aliases.retain(|old, new| live.contains(old) || live.contains(new));
        before - self.threads.len()
    }
}

fn xxh3_64_str(s: &str) -> u64 {
    xxh3_64(s.as_bytes())
}
