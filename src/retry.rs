//! Capped, jittered exponential backoff bounded by a deadline.
//!
//! Invariant: [`Backoff::delay_before`] never returns a delay that would end past the deadline;
//! when the next attempt cannot start in time, the caller gets `None` and gives up with the last
//! cause. That is what makes `init` unable to hang.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

/// A random number in `[0, 1)`, from the std hasher's per-instance random keys (no RNG crate).
pub fn random_unit() -> f64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(0);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// `d` scaled by a random factor in `[1 - spread, 1 + spread]`.
pub fn jitter(d: Duration, spread: f64) -> Duration {
    d.mul_f64(1.0 - spread + 2.0 * spread * random_unit())
}

/// Time kept for the final attempt before a deadline.
const LAST_ATTEMPT_ROOM: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(Duration::from_millis(200), Duration::from_secs(10))
    }
}

impl Backoff {
    pub fn new(first: Duration, cap: Duration) -> Self {
        Backoff { next: first, cap }
    }

    /// The wait before the next attempt: "equal jitter" (half fixed, half random) so waits never
    /// collapse to zero, doubled each time up to the cap. A server's `Retry-After` is honoured
    /// when longer. The wait is shortened to leave room for one last attempt before `deadline`;
    /// `None` when no room is left.
    pub fn delay_before(
        &mut self,
        deadline: Instant,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        let base = self.next;
        self.next = (self.next * 2).min(self.cap);
        let mut delay = base / 2 + base.mul_f64(0.5 * random_unit());
        if let Some(ra) = retry_after {
            delay = delay.max(ra.min(self.cap * 6));
        }
        // The last attempt happens just before the deadline, so "gave up after" means the
        // whole timeout was used; when too little time is left for an attempt, stop.
        let remaining = deadline.checked_duration_since(Instant::now())?;
        if remaining <= LAST_ATTEMPT_ROOM * 2 {
            return None;
        }
        let delay = delay.min(remaining - LAST_ATTEMPT_ROOM);
        Some(delay)
    }
}

/// The first and the longest wait of a resident step that keeps failing.
pub const STEP_BACKOFF_FIRST: Duration = Duration::from_secs(1);
pub const STEP_BACKOFF_CAP: Duration = Duration::from_secs(60);

/// A step of a resident loop: when it runs next, what it is, and how often it has failed in a
/// row. A failed step runs again later by capped ([`STEP_BACKOFF_CAP`]), jittered,
/// exponential backoff, or after the server's `Retry-After` when that is longer.
#[derive(Debug, Clone, Copy)]
pub struct Step<K> {
    pub at: Instant,
    pub kind: K,
    pub failures: u32,
}

impl<K: Copy> Step<K> {
    pub fn now(kind: K) -> Step<K> {
        Step::after(Duration::ZERO, kind)
    }

    pub fn after(d: Duration, kind: K) -> Step<K> {
        Step {
            at: Instant::now() + d,
            kind,
            failures: 0,
        }
    }

    /// Far enough never to fire; tokio's timer handles it without waking.
    pub fn never(kind: K) -> Step<K> {
        Step::after(Duration::from_secs(10 * 365 * 86400), kind)
    }

    /// The same step again after a failure.
    pub fn retry(self, retry_after: Option<Duration>) -> Step<K> {
        let failures = self.failures + 1;
        Step {
            at: Instant::now() + step_backoff(failures, retry_after),
            kind: self.kind,
            failures,
        }
    }
}

/// The wait after the `failures`-th failure in a row: 1 s doubling to 60 s, half of it random
/// ("equal jitter"), at least `retry_after` (itself capped at five minutes).
pub fn step_backoff(failures: u32, retry_after: Option<Duration>) -> Duration {
    let base = STEP_BACKOFF_FIRST
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(STEP_BACKOFF_CAP);
    let mut delay = base / 2 + base.mul_f64(0.5 * random_unit());
    if let Some(ra) = retry_after {
        delay = delay.max(ra.min(STEP_BACKOFF_CAP * 5));
    }
    delay
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_capped() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(800));
        let far = Instant::now() + Duration::from_secs(3600);
        let delays: Vec<Duration> = (0..8).map(|_| b.delay_before(far, None).unwrap()).collect();
        assert!(delays[0] >= Duration::from_millis(50) && delays[0] <= Duration::from_millis(100));
        assert!(delays[3] >= Duration::from_millis(400));
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(800)));
    }

    #[test]
    fn no_delay_past_the_deadline() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(10));
        let d = b
            .delay_before(Instant::now() + Duration::from_millis(300), None)
            .unwrap();
        assert!(d <= Duration::from_millis(200), "{d:?}");
        assert_eq!(
            b.delay_before(Instant::now() + Duration::from_millis(150), None),
            None
        );
    }

    #[test]
    fn retry_after_is_honoured() {
        let mut b = Backoff::new(Duration::from_millis(10), Duration::from_secs(10));
        let d = b
            .delay_before(
                Instant::now() + Duration::from_secs(60),
                Some(Duration::from_secs(2)),
            )
            .unwrap();
        assert!(d >= Duration::from_secs(2));
    }

    #[test]
    fn jitter_spreads_values() {
        let vals: Vec<Duration> = (0..50)
            .map(|_| jitter(Duration::from_secs(10), 0.1))
            .collect();
        assert!(vals
            .iter()
            .all(|d| *d >= Duration::from_secs(9) && *d <= Duration::from_secs(11)));
        assert!(vals.iter().any(|d| *d != vals[0]));
    }
}
