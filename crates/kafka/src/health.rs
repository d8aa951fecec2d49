//! Liveness and readiness of the service loop, read by the HTTP endpoints.
//!
//! The loop beats at every step that shows it is moving (each turn of a round, each restore
//! poll, each retry of a cluster call); a loop that has not beaten for the stall limit is
//! wedged (a call that never returns, the ordered thread stuck) and `/healthz` says so, so
//! that the orchestrator restarts it. Waiting on a cluster that is away is not a stall: the
//! retries beat.
//!
//! It also carries the run's stop request to the loops that wait on the cluster (retries,
//! restores), so that a SIGTERM during an outage stops the service within a request timeout
//! or two instead of after every retry.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Stall limit until the service sets its own: four of the default request timeouts.
const DEFAULT_STALL_LIMIT: Duration = Duration::from_secs(120);

/// Liveness and readiness, shared by the loop (which writes) and the HTTP thread (which reads).
#[derive(Debug)]
pub struct Health {
    /// What beat times are counted from.
    origin: Instant,
    /// Milliseconds from `origin` to the loop's latest beat.
    beat_ms: AtomicU64,
    /// Longest silence of the loop still counted as alive, in milliseconds.
    stall_limit_ms: AtomicU64,
    ready: AtomicBool,
    stopping: AtomicBool,
    /// The stop flag of the run under way.
    stop: Mutex<Option<Arc<AtomicBool>>>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            origin: Instant::now(),
            beat_ms: AtomicU64::new(0),
            stall_limit_ms: AtomicU64::new(DEFAULT_STALL_LIMIT.as_millis() as u64),
            ready: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            stop: Mutex::new(None),
        }
    }
}

impl Health {
    /// Ready: joined the group and every assigned shard restored.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.stopping.load(Ordering::Acquire) && !self.stop_requested()
    }

    /// How long the loop has been silent at `now`.
    pub fn silent_for(&self, now: Instant) -> Duration {
        let beat = self.origin + Duration::from_millis(self.beat_ms.load(Ordering::Acquire));
        now.saturating_duration_since(beat)
    }

    /// The longest silence of the loop counted as alive.
    pub fn stall_limit(&self) -> Duration {
        Duration::from_millis(self.stall_limit_ms.load(Ordering::Acquire))
    }

    /// How long the loop has been silent at `now`, if longer than the stall limit.
    pub fn stalled_for(&self, now: Instant) -> Option<Duration> {
        let silent = self.silent_for(now);
        (silent > Duration::from_millis(self.stall_limit_ms.load(Ordering::Acquire))).then_some(silent)
    }

    /// The loop moved.
    pub fn beat(&self) {
        let ms = self.origin.elapsed().as_millis() as u64;
        self.beat_ms.fetch_max(ms, Ordering::AcqRel);
    }

    /// Sets the longest silence counted as alive (and beats: the limit counts from now).
    pub fn set_stall_limit(&self, limit: Duration) {
        self.stall_limit_ms.store(limit.as_millis() as u64, Ordering::Release);
        self.beat();
    }

    pub(crate) fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// Watches `stop`, the run's stop flag, for [`Health::stop_requested`].
    pub(crate) fn watch_stop(&self, stop: Arc<AtomicBool>) {
        *self.stop.lock().unwrap_or_else(|e| e.into_inner()) = Some(stop);
    }

    /// Whether the run was asked to stop: a loop waiting on the cluster gives up.
    pub fn stop_requested(&self) -> bool {
        self.stop.lock().unwrap_or_else(|e| e.into_inner()).as_ref().is_some_and(|s| s.load(Ordering::Acquire))
    }

    pub(crate) fn set_stopping(&self) {
        self.stopping.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alive_until_the_loop_is_silent_for_longer_than_the_limit() {
        let h = Health::default();
        h.set_stall_limit(Duration::from_secs(10));
        let now = Instant::now();
        assert_eq!(h.stalled_for(now), None);
        assert_eq!(h.stalled_for(now + Duration::from_secs(9)), None);
        let silent = h.stalled_for(now + Duration::from_secs(11)).expect("stalled");
        assert!(silent >= Duration::from_secs(11) && silent < Duration::from_secs(12), "{silent:?}");
        // A beat later than `now` makes the same instant alive again.
        std::thread::sleep(Duration::from_millis(20));
        h.beat();
        assert_eq!(h.stalled_for(Instant::now() + Duration::from_secs(9)), None);
    }

    #[test]
    fn readiness_ends_with_the_stop() {
        let h = Health::default();
        assert!(!h.is_ready());
        h.set_ready(true);
        assert!(h.is_ready());
        h.set_stopping();
        assert!(!h.is_ready(), "a stopping instance takes no traffic");
        assert_eq!(h.stalled_for(Instant::now()), None, "but it is alive while it finishes");
    }

    #[test]
    fn a_stop_is_heard_through_the_flag_watched() {
        let h = Health::default();
        assert!(!h.stop_requested(), "no run, no stop");
        let stop = Arc::new(AtomicBool::new(false));
        h.watch_stop(stop.clone());
        h.set_ready(true);
        assert!(!h.stop_requested() && h.is_ready());
        stop.store(true, Ordering::Release);
        assert!(h.stop_requested());
        assert!(!h.is_ready(), "not ready from the request on, before the loop hears it");
        h.watch_stop(Arc::new(AtomicBool::new(false)));
        assert!(!h.stop_requested(), "a new run watches its own flag");
    }
}
