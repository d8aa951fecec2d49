//! When the schema registry is asked for an input schema id not seen before, and what a record
//! needing it is told meanwhile.
//!
//! Asked inline, a lookup holds its caller for up to the registry's request timeout. The
//! service asks in the background instead: the stitching thread is told at once that the
//! record must wait (a retriable error), a thread of its own asks the registry, and the record
//! decodes from the cache on a later try. Either way an id the registry could not answer for
//! is not asked for again before [`REGISTRY_RETRY`] (nor before as long as the failed request
//! took), and only that id waits: a registry refusing one id holds up no other.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::wire::WireError;

/// How long after the registry could not answer for an id it is asked for that id again.
pub const REGISTRY_RETRY: Duration = Duration::from_millis(500);

/// Threads asking the registry in the background.
const LOOKUP_THREADS: usize = 4;

/// Past this many ids remembered, those whose answer is no longer told (an unknown id past its
/// time, a failure past its retry) are forgotten: records naming ever new ids (corrupt values,
/// a producer on another registry) must not grow the map for ever.
const MAX_REMEMBERED: usize = 4_096;

/// Fetches schema id `id` into the caller's cache: `Ok` once it is there.
pub type Fetch = Arc<dyn Fn(u32) -> Result<(), WireError> + Send + Sync>;

/// Where the lookup of one id stands.
#[derive(Debug)]
enum Waiting {
    /// Asked for, no answer yet (background lookups).
    Asked,
    /// The registry could not answer; not asked again before `retry_at`.
    Failed { retry_at: Instant, why: String },
    /// The registry has no such id: told to the records naming it (dead-lettered) until
    /// `until`, then the id is asked for again (it may have been registered since).
    Unknown { until: Instant },
}

/// Who asks the registry.
enum Asker {
    /// The caller, with this fetch.
    Inline(Fetch),
    /// The lookup threads, sent the ids to ask for.
    Background(Sender<u32>),
}

/// Lookups of ids not in the cache, inline or in the background.
pub struct Lookups {
    asker: Asker,
    waiting: Arc<Mutex<HashMap<u32, Waiting>>>,
    failed: Arc<AtomicU64>,
}

impl std::fmt::Debug for Lookups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let background = matches!(self.asker, Asker::Background(_));
        f.debug_struct("Lookups").field("background", &background).finish_non_exhaustive()
    }
}

fn lock(m: &Mutex<HashMap<u32, Waiting>>) -> MutexGuard<'_, HashMap<u32, Waiting>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What a failed lookup of `id` is remembered with.
fn failure(id: u32, e: &WireError, started: Instant) -> Waiting {
    let why = match e {
        WireError::RegistryUnavailable(why) => why.clone(),
        other => format!("schema id {id}: {other}"),
    };
    Waiting::Failed { retry_at: Instant::now() + REGISTRY_RETRY.max(started.elapsed()), why }
}

impl Lookups {
    /// Lookups made by the caller itself.
    pub fn inline(fetch: Fetch) -> Self {
        Lookups { asker: Asker::Inline(fetch), waiting: Arc::default(), failed: Arc::default() }
    }

    /// Lookups made by threads of their own (a few, so one id the registry is slow to answer
    /// for does not hold up the others; they stop when this is dropped).
    pub fn background(fetch: Fetch) -> std::io::Result<Self> {
        let (ask, asked) = channel::<u32>();
        let asked = Arc::new(Mutex::new(asked));
        let waiting: Arc<Mutex<HashMap<u32, Waiting>>> = Arc::default();
        let failed: Arc<AtomicU64> = Arc::default();
        for i in 0..LOOKUP_THREADS {
            let (fetch, waiting, failed, asked) = (fetch.clone(), waiting.clone(), failed.clone(), asked.clone());
            std::thread::Builder::new()
                .name(format!("registry-{i}"))
                // Parsing a deeply nested schema recurses: the main thread's stack, not the default.
                .stack_size(8 << 20)
                .spawn(move || loop {
                    let next = asked.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    let Ok(id) = next else { return };
                    let started = Instant::now();
                    // A panic in a schema's parsing must not leave the id waiting for good.
                    let result =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fetch(id))).unwrap_or_else(|_| {
                            Err(WireError::RegistryUnavailable(format!("schema id {id}: lookup panicked")))
                        });
                    settle(&mut lock(&waiting), &failed, id, &result, started);
                })?;
        }
        Ok(Lookups { asker: Asker::Background(ask), waiting, failed })
    }

    /// Lookups the registry could not answer so far.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Looks `id` up (it is not in the cache): `Ok` once it is cached; a retriable error while
    /// the answer is awaited or the registry cannot give it; [`WireError::UnknownSchemaId`]
    /// when the registry has no such id.
    pub fn lookup(&self, id: u32, cached: impl Fn() -> bool) -> Result<(), WireError> {
        // The protocol's ids are positive 32-bit signed integers: a larger one names no schema,
        // and asking would only hold up its partition for a round trip.
        if i32::try_from(id).is_err() {
            return Err(WireError::UnknownSchemaId(id));
        }
        let now = Instant::now();
        let mut waiting = lock(&self.waiting);
        if waiting.len() >= MAX_REMEMBERED {
            waiting.retain(|_, w| match w {
                Waiting::Asked => true,
                Waiting::Failed { retry_at, .. } => now < *retry_at,
                Waiting::Unknown { until } => now < *until,
            });
        }
        match waiting.get(&id) {
            Some(Waiting::Asked) => {
                return Err(WireError::RegistryUnavailable(format!(
                    "schema id {id}: asked the registry, no answer yet"
                )))
            }
            Some(Waiting::Failed { retry_at, why }) if now < *retry_at => {
                return Err(WireError::RegistryUnavailable(format!("{why} (not asked again yet)")));
            }
            Some(Waiting::Unknown { until }) if now < *until => return Err(WireError::UnknownSchemaId(id)),
            Some(Waiting::Failed { .. } | Waiting::Unknown { .. }) | None => {}
        }
        // Fetched by the background thread between the caller's look and this one.
        if cached() {
            waiting.remove(&id);
            return Ok(());
        }
        match &self.asker {
            Asker::Background(ask) => {
                waiting.insert(id, Waiting::Asked);
                // The threads are gone only if they could not go on: then the records wait, and
                // say so.
                if ask.send(id).is_err() {
                    let stopped = Err(WireError::RegistryUnavailable("lookup threads stopped".into()));
                    settle(&mut waiting, &self.failed, id, &stopped, now);
                }
                Err(WireError::RegistryUnavailable(format!("schema id {id}: asked the registry")))
            }
            Asker::Inline(fetch) => {
                drop(waiting);
                let result = fetch(id);
                settle(&mut lock(&self.waiting), &self.failed, id, &result, now);
                result
            }
        }
    }
}

/// Records how the lookup of `id` begun at `started` ended: cached (forgotten here), no such id
/// (told for [`REGISTRY_RETRY`]), or failed (counted; not asked again before its retry time).
fn settle(
    waiting: &mut HashMap<u32, Waiting>,
    failed: &AtomicU64,
    id: u32,
    result: &Result<(), WireError>,
    started: Instant,
) {
    match result {
        Ok(()) => {
            waiting.remove(&id);
        }
        Err(WireError::UnknownSchemaId(_)) => {
            waiting.insert(id, Waiting::Unknown { until: Instant::now() + REGISTRY_RETRY });
        }
        Err(e) => {
            failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, id, "schema registry lookup failed");
            waiting.insert(id, failure(id, e, started));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    /// A fetch answering `Ok` for even ids once `up`, unavailable otherwise (`UnknownSchemaId`
    /// for 99), counting its calls.
    fn fetch(up: Arc<AtomicBool>, calls: Arc<AtomicU64>) -> Fetch {
        Arc::new(move |id| {
            calls.fetch_add(1, Ordering::SeqCst);
            match id {
                99 => Err(WireError::UnknownSchemaId(99)),
                _ if id % 2 == 0 && up.load(Ordering::SeqCst) => Ok(()),
                _ => Err(WireError::RegistryUnavailable(format!("id {id}: HTTP 503"))),
            }
        })
    }

    #[test]
    fn an_id_that_failed_waits_alone_before_it_is_asked_again() {
        let (up, calls) = (Arc::new(AtomicBool::new(true)), Arc::new(AtomicU64::new(0)));
        let l = Lookups::inline(fetch(up, calls.clone()));
        assert!(l.lookup(1, || false).unwrap_err().is_retriable());
        assert!(l.lookup(1, || false).unwrap_err().to_string().contains("not asked again yet"));
        assert_eq!(calls.load(Ordering::SeqCst), 1, "not asked again at once");
        assert!(l.lookup(2, || false).is_ok(), "another id is asked for all the same");
        assert!(matches!(l.lookup(99, || false), Err(WireError::UnknownSchemaId(99))));
        assert!(matches!(l.lookup(99, || false), Err(WireError::UnknownSchemaId(99))), "told, not asked again");
        std::thread::sleep(REGISTRY_RETRY);
        assert!(l.lookup(1, || false).unwrap_err().is_retriable());
        assert_eq!((calls.load(Ordering::SeqCst), l.failed()), (4, 2));
    }

    #[test]
    fn a_lookup_that_panics_is_a_counted_failure_and_asked_again() {
        let panicky: Fetch = Arc::new(|id| if id == 7 { panic!("a schema that breaks the parser") } else { Ok(()) });
        let l = Lookups::background(panicky).unwrap();
        assert!(l.lookup(7, || false).unwrap_err().is_retriable());
        let t = Instant::now();
        while l.failed() == 0 {
            assert!(t.elapsed() < Duration::from_secs(10), "the panic was not counted");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(l.lookup(7, || false).unwrap_err().to_string().contains("panicked"));
        std::thread::sleep(REGISTRY_RETRY);
        assert!(l.lookup(7, || false).unwrap_err().is_retriable(), "asked again");
        assert!(l.lookup(8, || false).unwrap_err().is_retriable(), "the threads still serve");
    }

    #[test]
    fn background_lookups_never_hold_the_caller_and_answer_on_a_later_try() {
        let (up, calls) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let slow: Fetch = {
            let f = fetch(up.clone(), calls.clone());
            Arc::new(move |id| {
                std::thread::sleep(Duration::from_millis(50));
                f(id)
            })
        };
        let l = Lookups::background(slow).unwrap();
        let started = Instant::now();
        for _ in 0..3 {
            assert!(l.lookup(2, || false).unwrap_err().is_retriable());
        }
        assert!(started.elapsed() < Duration::from_millis(40), "the caller never waits for the registry");
        let until = |done: &dyn Fn() -> bool| {
            let t = Instant::now();
            while !done() {
                assert!(t.elapsed() < Duration::from_secs(10));
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        until(&|| l.failed() == 1);
        assert_eq!(calls.load(Ordering::SeqCst), 1, "asked once while waiting");
        up.store(true, Ordering::SeqCst);
        std::thread::sleep(REGISTRY_RETRY);
        let cached = Arc::new(AtomicBool::new(false));
        assert!(l.lookup(2, || false).unwrap_err().is_retriable(), "asked again");
        until(&|| calls.load(Ordering::SeqCst) == 2 && lock(&l.waiting).is_empty());
        cached.store(true, Ordering::SeqCst);
        assert!(l.lookup(2, || cached.load(Ordering::SeqCst)).is_ok(), "cached by the thread");
        // The registry's "no such id" is told to the records naming it for a while.
        assert!(l.lookup(99, || false).unwrap_err().is_retriable());
        until(&|| matches!(lock(&l.waiting).get(&99), Some(Waiting::Unknown { .. })));
        for _ in 0..2 {
            assert!(matches!(l.lookup(99, || false), Err(WireError::UnknownSchemaId(99))));
        }
        std::thread::sleep(REGISTRY_RETRY);
        assert!(l.lookup(99, || false).unwrap_err().is_retriable(), "then asked again");
    }

    /// An id no registry can hold is refused without asking; ids whose answer is no longer
    /// told are forgotten once many are remembered (ever new garbage ids grow nothing).
    #[test]
    fn impossible_ids_are_not_asked_for_and_stale_answers_are_forgotten() {
        let calls = Arc::new(AtomicU64::new(0));
        let counted = calls.clone();
        let unknown: Fetch = Arc::new(move |id| {
            counted.fetch_add(1, Ordering::SeqCst);
            Err(WireError::UnknownSchemaId(id))
        });
        let l = Lookups::inline(unknown);
        assert!(matches!(l.lookup(u32::MAX, || false), Err(WireError::UnknownSchemaId(u32::MAX))));
        assert_eq!(calls.load(Ordering::SeqCst), 0, "not asked");
        for id in 0..MAX_REMEMBERED as u32 {
            assert!(matches!(l.lookup(id, || false), Err(WireError::UnknownSchemaId(_))));
        }
        assert_eq!(lock(&l.waiting).len(), MAX_REMEMBERED);
        std::thread::sleep(REGISTRY_RETRY);
        assert!(l.lookup(1_000_000, || false).is_err());
        assert_eq!(lock(&l.waiting).len(), 1, "the answers past their time were forgotten");
    }
}
