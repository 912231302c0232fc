//! When an effect is tried again: a list of delays after each failed try, with jitter.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The delays before each try after the first, e.g. (the default, in the spirit of Svix)
/// `["5s", "5m", "30m", "2h", "5h", "10h", "10h"]`: the first try is immediate, and an effect
/// that failed as many times as there are delays, plus once, is failed for good.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySchedule {
    #[serde(with = "humantime_serde_vec")]
    pub delays: Vec<Duration>,
    /// Each delay is moved by up to this fraction, up or down, so retries do not come in waves.
    pub jitter: f64,
}

impl Default for RetrySchedule {
    fn default() -> Self {
        let minutes = |m: u64| Duration::from_secs(m * 60);
        Self {
            delays: vec![
                Duration::from_secs(5),
                minutes(5),
                minutes(30),
                minutes(120),
                minutes(300),
                minutes(600),
                minutes(600),
            ],
            jitter: 0.2,
        }
    }
}

impl RetrySchedule {
    /// The delay before the next try after `attempts` failed tries; `None` when the schedule is
    /// spent. `random` is in `[0, 1)`.
    pub fn next_delay(&self, attempts: u32, random: f64) -> Option<Duration> {
        let index = usize::try_from(attempts.checked_sub(1)?).ok()?;
        let base = *self.delays.get(index)?;
        let factor = 1.0 + self.jitter * (2.0 * random - 1.0);
        Some(base.mul_f64(factor.max(0.0)))
    }

    /// How many tries an effect gets in all.
    pub fn max_tries(&self) -> usize {
        self.delays.len() + 1
    }

    pub fn validate(&self) -> Result<(), &'static str> {
        if !(0.0..1.0).contains(&self.jitter) {
            return Err("jitter must be at least 0 and below 1");
        }
        Ok(())
    }
}

/// `Vec<Duration>` as humantime strings (`"5s"`, `"30m"`).
mod humantime_serde_vec {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(delays: &[Duration], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(delays.iter().map(|d| humantime::format_duration(*d).to_string()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Duration>, D::Error> {
        let texts = Vec::<String>::deserialize(deserializer)?;
        texts
            .iter()
            .map(|text| humantime::parse_duration(text).map_err(|e| serde::de::Error::custom(format!("`{text}`: {e}"))))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tries_follow_the_delays_then_stop() {
        let schedule = RetrySchedule { delays: vec![Duration::from_secs(5), Duration::from_secs(60)], jitter: 0.0 };
        assert_eq!(schedule.next_delay(0, 0.5), None, "no try failed yet: nothing to schedule");
        assert_eq!(schedule.next_delay(1, 0.5), Some(Duration::from_secs(5)));
        assert_eq!(schedule.next_delay(2, 0.5), Some(Duration::from_secs(60)));
        assert_eq!(schedule.next_delay(3, 0.5), None);
        assert_eq!(schedule.max_tries(), 3);
    }

    #[test]
    fn jitter_moves_a_delay_both_ways_within_its_fraction() {
        let schedule = RetrySchedule { delays: vec![Duration::from_secs(100)], jitter: 0.2 };
        assert_eq!(schedule.next_delay(1, 0.0), Some(Duration::from_secs(80)));
        assert_eq!(schedule.next_delay(1, 0.5), Some(Duration::from_secs(100)));
        assert!(schedule.next_delay(1, 0.999).unwrap() < Duration::from_secs(120));
    }

    #[test]
    fn the_default_is_svix_like_and_settings_parse_from_text() {
        let schedule = RetrySchedule::default();
        assert_eq!(schedule.max_tries(), 8);
        assert_eq!(schedule.delays[1], Duration::from_secs(300));
        let parsed: RetrySchedule = serde_json::from_str(r#"{"delays": ["1s", "2m"], "jitter": 0.1}"#).unwrap();
        assert_eq!(parsed.delays, vec![Duration::from_secs(1), Duration::from_secs(120)]);
        let err = serde_json::from_str::<RetrySchedule>(r#"{"delays": ["soon"]}"#).unwrap_err().to_string();
        assert!(err.contains("soon"), "{err}");
        assert!(RetrySchedule { jitter: 1.5, ..RetrySchedule::default() }.validate().is_err());
    }
}
