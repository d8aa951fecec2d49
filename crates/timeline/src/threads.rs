//! Conversation threading across channels: by case id first, then by reply chains.

use hashbrown::{HashMap, HashSet};
use std::sync::Arc;

use omnistitch_model::{Event, EventTime};

/// Maps conversation keys (message ids, chat sessions, calls, posts, cases) to thread ids.
#[derive(Debug, Default)]
pub struct ThreadIndex {
    threads: HashMap<Box<str>, (Arc<str>, EventTime)>,
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

    fn lookup(&self, key: &str) -> Option<Arc<str>> {
        let mut thread = self.threads.get(key).map(|(t, _)| t.clone())?;
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
        let own = event.thread.key.as_deref();
        let parent = event.thread.parent.as_deref();
        let before = own.and_then(|k| self.lookup(k)).or_else(|| parent.and_then(|k| self.lookup(k)));
        let case_key = event.case_id.as_ref().map(|c| format!("case:{c}"));
        let thread: Arc<str> = match &case_key {
            Some(key) => self.lookup(key).unwrap_or_else(|| Arc::from(key.as_str())),
            None => match &before {
                Some(t) => t.clone(),
                None => Arc::from(own.map(str::to_string).unwrap_or_else(|| format!("event:{}", event.event_id))),
            },
        };
        for key in [case_key.as_deref(), own, parent].into_iter().flatten() {
            self.remember(key, &thread, event.time);
        }
        let replaced = before.filter(|b| *b != thread);
        if let Some(old) = &replaced {
            // Other keys of the re-threaded conversation follow it through the alias.
            self.aliases.insert(old.clone(), thread.clone());
        }
        Threaded { thread, replaced }
    }

    fn remember(&mut self, key: &str, thread: &Arc<str>, t: EventTime) {
        match self.threads.get_mut(key) {
            Some(slot) => {
                if slot.0 != *thread {
                    slot.0 = thread.clone();
                }
                slot.1 = slot.1.max(t);
            }
            None => {
                self.threads.insert(key.into(), (thread.clone(), t));
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
