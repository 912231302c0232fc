//! Exponential backoff with jitter, for when the broker or the database is failing.
//!
//! The n-th consecutive failure waits a random time in `[base/2, base]` with
//! `base = min(initial * 2^n, max)` ("equal jitter"): never zero, so a failing relay never
//! busy-loops, and spread out, so several relays do not retry in lock-step.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self { initial, max: max.max(initial), failures: 0 }
    }

    /// The pause after one more failure; `jitter` in `[0, 1]` picks the point in the window.
    pub fn next_delay(&mut self, jitter: f64) -> Duration {
        let base = self.initial.saturating_mul(2u32.saturating_pow(self.failures.min(30))).min(self.max);
        self.failures = self.failures.saturating_add(1);
        base.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }

    /// The pause after one more failure, with random jitter.
    pub fn next_random(&mut self) -> Duration {
        self.next_delay(rand::random::<f64>())
    }

    /// A success: the next failure starts from the initial delay again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_stay_within_the_jitter_window() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let full: Vec<Duration> = (0..6).map(|_| backoff.next_delay(1.0)).collect();
        let ms: Vec<u128> = full.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1000, 1000]);
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(backoff.next_delay(0.0), Duration::from_millis(50));
        assert_eq!(backoff.next_delay(0.5), Duration::from_millis(150));
    }

    #[test]
    fn a_success_starts_over_and_no_delay_is_zero() {
        let mut backoff = Backoff::new(Duration::from_millis(10), Duration::from_secs(30));
        for _ in 0..100 {
            assert!(backoff.next_random() >= Duration::from_millis(5));
        }
        assert_eq!(backoff.failures(), 100);
        assert!(backoff.next_delay(1.0) <= Duration::from_secs(30));
        backoff.reset();
        assert_eq!(backoff.next_delay(1.0), Duration::from_millis(10));
    }
}
