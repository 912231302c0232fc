//! A token bucket per client: each request takes one token; tokens come back at
//! `requests_per_second` up to `burst`. A refused request learns how long until the next token.
//!
//! Buckets of clients that went quiet (refilled to full) are dropped when the map grows, so
//! memory stays bounded by the number of recently active clients.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::RateLimitSettings;

/// When the map holds this many buckets, full (idle) ones are dropped.
const PRUNE_AT: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// `None` when rate limiting is switched off.
    pub fn from_settings(settings: &RateLimitSettings) -> Option<Self> {
        (settings.enabled && settings.requests_per_second > 0.0).then(|| Self {
            rate: settings.requests_per_second,
            burst: f64::from(settings.burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// Takes a token for `client` now; `Err(wait)` says when one will be there.
    pub fn check(&self, client: &str) -> Result<(), Duration> {
        self.check_at(client, Instant::now())
    }

    pub fn check_at(&self, client: &str, now: Instant) -> Result<(), Duration> {
        let mut buckets = match self.buckets.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if buckets.len() >= PRUNE_AT {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, b| b.tokens + now.saturating_duration_since(b.updated).as_secs_f64() * rate < burst);
        }
        let bucket = buckets.entry(client.to_owned()).or_insert(Bucket { tokens: self.burst, updated: now });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(rate: f64, burst: u32) -> RateLimiter {
        RateLimiter::from_settings(&RateLimitSettings { enabled: true, requests_per_second: rate, burst }).unwrap()
    }

    #[test]
    fn a_burst_passes_then_the_next_request_waits_one_interval() {
        let limiter = limiter(10.0, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check_at("a", t0).is_ok());
        }
        let wait = limiter.check_at("a", t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-6, "{wait:?}");
        assert!(limiter.check_at("a", t0 + Duration::from_millis(100)).is_ok());
        assert!(limiter.check_at("a", t0 + Duration::from_millis(100)).is_err());
    }

    #[test]
    fn clients_have_their_own_buckets() {
        let limiter = limiter(1.0, 1);
        let t0 = Instant::now();
        assert!(limiter.check_at("a", t0).is_ok());
        assert!(limiter.check_at("a", t0).is_err());
        assert!(limiter.check_at("b", t0).is_ok());
    }

    #[test]
    fn tokens_refill_only_up_to_the_burst() {
        let limiter = limiter(100.0, 2);
        let t0 = Instant::now();
        assert!(limiter.check_at("a", t0).is_ok());
        let later = t0 + Duration::from_secs(60);
        assert!(limiter.check_at("a", later).is_ok());
        assert!(limiter.check_at("a", later).is_ok());
        assert!(limiter.check_at("a", later).is_err());
    }

    #[test]
    fn switched_off_means_no_limiter() {
        assert!(
            RateLimiter::from_settings(&RateLimitSettings { enabled: false, ..RateLimitSettings::default() }).is_none()
        );
    }
}
