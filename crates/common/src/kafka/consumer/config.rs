//! The settings of one consumer: its group, what it reads, where a new group starts, batching,
//! retries, outages, the dead-letter and retry topics and where its offsets live.
//!
//! A service embeds [`ConsumerSettings`] in its own config section (e.g. `[projector.consumer]`)
//! and sets its own defaults for `group_id` and `topics`; every other key has a default that
//! works locally. Unknown keys are errors; durations are written `"250ms"`, `"10s"`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// The suffix of a group's default dead-letter topic: `<group_id>.dlq`.
pub const DEAD_LETTER_SUFFIX: &str = ".dlq";
/// The suffix of a group's default retry topic: `<group_id>.retry`.
pub const RETRY_SUFFIX: &str = ".retry";

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SettingsError {
    #[error("consumer setting `{key}` {problem}")]
    Invalid { key: &'static str, problem: String },
    #[error("`{0}` is not a start position: expected `earliest`, `latest` or an RFC 3339 date-time such as 2026-05-01T00:00:00Z")]
    StartPosition(String),
}

fn invalid(key: &'static str, problem: impl Into<String>) -> SettingsError {
    SettingsError::Invalid { key, problem: problem.into() }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ConsumerSettings {
    /// The consumer group: one per consumer service (and one per rebuild of a read model).
    pub group_id: String,
    /// The topics to subscribe to.
    pub topics: Vec<String>,
    /// Event types (short names such as `OrderPlaced`) the handler receives. Events of other
    /// types are skipped and their offsets still advance. Empty: every event type.
    pub event_types: Vec<String>,
    /// Where a group without stored offsets starts: `earliest`, `latest` or an RFC 3339
    /// date-time (the first event at or after it, by record timestamp).
    pub start: StartPosition,
    /// The most events handed to the handler in one call (all from one partition).
    pub batch_max_size: usize,
    /// How long to wait for a batch to fill once its first event is there.
    #[serde(with = "humantime_serde")]
    pub batch_linger: Duration,
    pub retry: RetryPolicy,
    /// How a partition waits while a dependency is unavailable, and when that makes the consumer
    /// not ready.
    pub outage: OutagePolicy,
    /// Where events that cannot be handled go; default `<group_id>.dlq`.
    pub dead_letter_topic: Option<String>,
    /// Replication factor of the dead-letter topic (and the retry topic) when the runtime
    /// creates it.
    pub dead_letter_replication: i32,
    /// This group's own way back in; default `<group_id>.retry`. The runtime creates it (one
    /// partition) and reads it besides `topics`, so an event redriven there (`eventline dlq
    /// redrive --to retry`) is seen again by this group only, not by every group of its topic.
    pub retry_topic: Option<String>,
    /// Where consumed offsets are kept: `kafka` (committed after the handler succeeded) or
    /// `transactional` (saved by the handler in its own database transaction).
    pub offset_mode: OffsetMode,
    /// What a failing event holds up: `partition` (the partition waits while it is retried, and
    /// moves on past it once it is dead-lettered) or `key` (only later events of its key wait,
    /// parked in the offset store's database, while other keys flow; transactional offset mode
    /// only). See "Failures and per-key order" in the consumer module docs.
    pub key_order: KeyOrder,
    /// With `key_order = "key"`: how an event that blocks its key is retried from the parked
    /// store once the in-line `retry` budget is spent; `max_attempts` counts those rounds
    /// (each a full in-line `retry` round) before it is dead-lettered.
    pub parked_retry: RetryPolicy,
    /// How often stored offsets are committed to Kafka (plus a final commit on revoke and
    /// shutdown).
    #[serde(with = "humantime_serde")]
    pub commit_interval: Duration,
    /// How often lag is measured, exported and, while catching up, logged.
    #[serde(with = "humantime_serde")]
    pub lag_report_interval: Duration,
    /// Extra librdkafka consumer properties (e.g. `session.timeout.ms`), applied before the
    /// runtime's own guarantees (group id, manual offset store), which cannot be overridden.
    pub properties: BTreeMap<String, String>,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        Self {
            group_id: "eventline-consumer".to_owned(),
            topics: Vec::new(),
            event_types: Vec::new(),
            start: StartPosition::Earliest,
            batch_max_size: 200,
            batch_linger: Duration::from_millis(10),
            retry: RetryPolicy::default(),
            outage: OutagePolicy::default(),
            dead_letter_topic: None,
            dead_letter_replication: 1,
            retry_topic: None,
            offset_mode: OffsetMode::Kafka,
            key_order: KeyOrder::Partition,
            parked_retry: RetryPolicy {
                max_attempts: 10,
                initial_backoff: Duration::from_secs(1),
                max_backoff: Duration::from_secs(300),
                jitter: 0.2,
            },
            commit_interval: Duration::from_secs(1),
            lag_report_interval: Duration::from_secs(10),
            properties: BTreeMap::new(),
        }
    }
}

impl ConsumerSettings {
    /// Default settings for `group_id` reading `topics`.
    pub fn new(group_id: impl Into<String>, topics: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self { group_id: group_id.into(), topics: topics.into_iter().map(Into::into).collect(), ..Self::default() }
    }

    /// The dead-letter topic: the configured one or `<group_id>.dlq`.
    pub fn dead_letter_topic(&self) -> String {
        self.dead_letter_topic.clone().unwrap_or_else(|| format!("{}{DEAD_LETTER_SUFFIX}", self.group_id))
    }

    /// The retry topic: the configured one or `<group_id>.retry`.
    pub fn retry_topic(&self) -> String {
        self.retry_topic.clone().unwrap_or_else(|| format!("{}{RETRY_SUFFIX}", self.group_id))
    }

    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.group_id.trim().is_empty() {
            return Err(invalid("group_id", "must not be empty"));
        }
        if self.topics.is_empty() || self.topics.iter().any(|t| t.trim().is_empty()) {
            return Err(invalid("topics", "must name at least one topic, none empty"));
        }
        if self.topics.contains(&self.dead_letter_topic()) {
            return Err(invalid("dead_letter_topic", "must not be one of the consumed topics"));
        }
        let retry_topic = self.retry_topic();
        if retry_topic.trim().is_empty() {
            return Err(invalid("retry_topic", "must not be empty"));
        }
        if self.topics.contains(&retry_topic) {
            return Err(invalid("retry_topic", "must not be one of the consumed topics (it is read besides them)"));
        }
        if retry_topic == self.dead_letter_topic() {
            return Err(invalid("retry_topic", "must not be the dead-letter topic"));
        }
        if self.batch_max_size == 0 {
            return Err(invalid("batch_max_size", "must be at least 1"));
        }
        if self.dead_letter_replication < 1 {
            return Err(invalid("dead_letter_replication", "must be at least 1"));
        }
        if self.commit_interval.is_zero() {
            return Err(invalid("commit_interval", "must be positive"));
        }
        if self.lag_report_interval.is_zero() {
            return Err(invalid("lag_report_interval", "must be positive"));
        }
        if self.key_order == KeyOrder::Key && self.offset_mode != OffsetMode::Transactional {
            return Err(invalid(
                "key_order",
                "\"key\" needs offset_mode = \"transactional\": parked events live in the offset store's database, \
                 next to the offsets that move past them",
            ));
        }
        self.retry.validate()?;
        self.parked_retry.validate().map_err(|error| match error {
            SettingsError::Invalid { key, problem } => SettingsError::Invalid { key: parked_key(key), problem },
            other => other,
        })?;
        self.outage.validate()
    }
}

/// `retry.*` keys as `parked_retry.*`, for the parked retry policy's errors.
fn parked_key(key: &'static str) -> &'static str {
    match key {
        "retry.max_attempts" => "parked_retry.max_attempts",
        "retry.initial_backoff" => "parked_retry.initial_backoff",
        "retry.jitter" => "parked_retry.jitter",
        other => other,
    }
}

/// What waits while an event fails ([`ConsumerSettings::key_order`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyOrder {
    /// The partition waits while an event is retried; a dead-lettered event's later events of
    /// its key are handled (order among handled events is kept, the dead letter is missing).
    Partition,
    /// Only the event's key waits: its later events on the partition are parked, in order, until
    /// it succeeds or its dead letter is redriven and succeeds; other keys flow.
    Key,
}

/// Where a group without stored offsets starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum StartPosition {
    Earliest,
    Latest,
    /// The first event whose record timestamp is at or after this time.
    At(DateTime<Utc>),
}

impl FromStr for StartPosition {
    type Err = SettingsError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "earliest" => Ok(Self::Earliest),
            "latest" => Ok(Self::Latest),
            other => DateTime::parse_from_rfc3339(other)
                .map(|t| Self::At(t.with_timezone(&Utc)))
                .map_err(|_| SettingsError::StartPosition(other.to_owned())),
        }
    }
}

impl fmt::Display for StartPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Earliest => f.write_str("earliest"),
            Self::Latest => f.write_str("latest"),
            Self::At(time) => f.write_str(&time.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
        }
    }
}

impl TryFrom<String> for StartPosition {
    type Error = SettingsError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<StartPosition> for String {
    fn from(start: StartPosition) -> Self {
        start.to_string()
    }
}

/// Where a consumer's offsets are authoritative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OffsetMode {
    /// Committed to Kafka after the handler succeeded; handler effects must be idempotent.
    Kafka,
    /// Saved by the handler with [`OffsetStore::save`](super::OffsetStore::save) in the same
    /// database transaction as its effects; the runtime seeks to them on assignment.
    Transactional,
}

/// How retryable failures are retried: exponential backoff with jitter, up to `max_attempts`
/// handler calls in all.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Handler calls per batch before a still-failing event is dead-lettered (at least 1).
    pub max_attempts: u32,
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Each delay is scaled by a random factor in `1 ± jitter` (0 to 1).
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.max_attempts == 0 {
            return Err(invalid("retry.max_attempts", "must be at least 1"));
        }
        if self.initial_backoff > self.max_backoff {
            return Err(invalid("retry.initial_backoff", "must not exceed retry.max_backoff"));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(invalid("retry.jitter", "must be between 0 and 1"));
        }
        Ok(())
    }

    /// The pause after failed attempt `attempt` (1-based): `initial × 2^(attempt-1)`, capped at
    /// `max_backoff`, scaled by `1 + jitter × (2·random − 1)` for `random` in `[0, 1)`.
    pub fn backoff(&self, attempt: u32, random: f64) -> Duration {
        exponential(self.initial_backoff, self.max_backoff, self.jitter, attempt, random)
    }
}

/// How the runtime waits out a dependency that a handler reports unavailable
/// ([`HandlerError::Unavailable`](super::HandlerError::Unavailable)): the same events again
/// after exponential backoff with jitter, for as long as it takes, without spending the
/// [`RetryPolicy`]'s attempts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OutagePolicy {
    /// The first pause (positive).
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// The longest pause between two calls while the dependency stays unavailable.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Each pause is scaled by a random factor in `1 ± jitter` (0 to 1), so partitions and
    /// instances do not call the dependency in step.
    pub jitter: f64,
    /// A partition (or the consumer) paused longer than this makes the consumer not ready
    /// ([`ConsumerProgress::is_ready`](super::ConsumerProgress::is_ready)); it is ready again as
    /// soon as the dependency is back.
    #[serde(with = "humantime_serde")]
    pub ready_after: Duration,
}

impl Default for OutagePolicy {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            jitter: 0.2,
            ready_after: Duration::from_secs(60),
        }
    }
}

impl OutagePolicy {
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.initial_backoff.is_zero() {
            return Err(invalid("outage.initial_backoff", "must be positive"));
        }
        if self.initial_backoff > self.max_backoff {
            return Err(invalid("outage.initial_backoff", "must not exceed outage.max_backoff"));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(invalid("outage.jitter", "must be between 0 and 1"));
        }
        if self.ready_after.is_zero() {
            return Err(invalid("outage.ready_after", "must be positive"));
        }
        Ok(())
    }

    /// The pause after the `call`-th unavailable answer in a row (1-based), computed like
    /// [`RetryPolicy::backoff`].
    pub fn backoff(&self, call: u32, random: f64) -> Duration {
        exponential(self.initial_backoff, self.max_backoff, self.jitter, call, random)
    }
}

/// `initial × 2^(n-1)`, capped at `max`, scaled by `1 + jitter × (2·random − 1)`, never past `max`.
fn exponential(initial: Duration, max: Duration, jitter: f64, n: u32, random: f64) -> Duration {
    let exponent = n.saturating_sub(1).min(30);
    let base = initial.saturating_mul(1u32 << exponent).min(max);
    let factor = 1.0 + jitter * (2.0 * random.clamp(0.0, 1.0) - 1.0);
    base.mul_f64(factor.max(0.0)).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_once_topics_are_named() {
        assert!(ConsumerSettings::default().validate().is_err(), "no topics");
        let settings = ConsumerSettings::new("projector", ["orders"]);
        settings.validate().unwrap();
        assert_eq!(settings.dead_letter_topic(), "projector.dlq");
    }

    #[test]
    fn the_retry_topic_defaults_to_the_group_and_must_stand_apart() {
        let settings = ConsumerSettings::new("projector", ["orders"]);
        assert_eq!(settings.retry_topic(), "projector.retry");
        let named: ConsumerSettings =
            toml::from_str("group_id = \"g\"\ntopics = [\"orders\"]\nretry_topic = \"g-again\"").unwrap();
        assert_eq!(named.retry_topic(), "g-again");
        named.validate().unwrap();

        let problem = |settings: ConsumerSettings| match settings.validate() {
            Err(SettingsError::Invalid { key: "retry_topic", problem }) => problem,
            other => panic!("expected a retry_topic error, got {other:?}"),
        };
        let reads_it = ConsumerSettings::new("g", ["orders", "g.retry"]);
        assert!(problem(reads_it).contains("consumed topics"));
        let mut is_the_dlq = ConsumerSettings::new("g", ["orders"]);
        is_the_dlq.retry_topic = Some("g.dlq".into());
        assert!(problem(is_the_dlq).contains("dead-letter topic"));
        let mut same_as_custom_dlq = ConsumerSettings::new("g", ["orders"]);
        same_as_custom_dlq.dead_letter_topic = Some("g.retry".into());
        assert!(problem(same_as_custom_dlq).contains("dead-letter topic"));
        let mut empty = ConsumerSettings::new("g", ["orders"]);
        empty.retry_topic = Some(" ".into());
        assert!(problem(empty).contains("empty"));
    }

    #[test]
    fn toml_with_durations_and_a_date_time_parses() {
        let text = r#"
            group_id = "reporter"
            topics = ["orders", "payments"]
            event_types = ["OrderPlaced"]
            start = "2026-05-01T12:00:00Z"
            batch_linger = "25ms"
            offset_mode = "transactional"
            [retry]
            max_attempts = 3
            initial_backoff = "50ms"
            [outage]
            max_backoff = "5s"
            ready_after = "2m"
            [properties]
            "session.timeout.ms" = "10000"
        "#;
        let settings: ConsumerSettings = toml::from_str(text).unwrap();
        assert_eq!(settings.batch_linger, Duration::from_millis(25));
        assert_eq!(settings.retry.max_attempts, 3);
        assert_eq!(settings.retry.max_backoff, RetryPolicy::default().max_backoff);
        assert_eq!(settings.outage.max_backoff, Duration::from_secs(5));
        assert_eq!(settings.outage.ready_after, Duration::from_secs(120));
        assert_eq!(settings.outage.initial_backoff, OutagePolicy::default().initial_backoff);
        assert_eq!(settings.offset_mode, OffsetMode::Transactional);
        assert_eq!(settings.key_order, KeyOrder::Partition, "the default");
        let StartPosition::At(time) = settings.start else { panic!("{:?}", settings.start) };
        assert_eq!(time.to_rfc3339(), "2026-05-01T12:00:00+00:00");
        settings.validate().unwrap();
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(toml::from_str::<ConsumerSettings>("group = \"x\"").is_err());
        assert!(toml::from_str::<ConsumerSettings>("[retry]\nattempts = 2").is_err());
        assert!(toml::from_str::<ConsumerSettings>("[outage]\nmax_attempts = 2").is_err());
        let err = toml::from_str::<ConsumerSettings>("start = \"yesterday\"").unwrap_err().to_string();
        assert!(err.contains("earliest"), "{err}");
        let mut settings = ConsumerSettings::new("g", ["t"]);
        settings.retry.jitter = 1.5;
        assert!(matches!(settings.validate(), Err(SettingsError::Invalid { key: "retry.jitter", .. })));
        settings = ConsumerSettings::new("g", ["t"]);
        settings.outage.initial_backoff = Duration::ZERO;
        assert!(matches!(settings.validate(), Err(SettingsError::Invalid { key: "outage.initial_backoff", .. })));
        settings.outage = OutagePolicy { max_backoff: Duration::from_millis(100), ..OutagePolicy::default() };
        assert!(matches!(settings.validate(), Err(SettingsError::Invalid { key: "outage.initial_backoff", .. })));
        settings.outage = OutagePolicy { ready_after: Duration::ZERO, ..OutagePolicy::default() };
        assert!(matches!(settings.validate(), Err(SettingsError::Invalid { key: "outage.ready_after", .. })));
        settings = ConsumerSettings::new("g", ["g.dlq"]);
        assert!(settings.validate().is_err(), "consuming its own dead-letter topic");
    }

    #[test]
    fn key_order_needs_the_transactional_offset_mode() {
        let keyed = |mode: &str| {
            toml::from_str::<ConsumerSettings>(&format!(
                "group_id = \"g\"\ntopics = [\"orders\"]\nkey_order = \"key\"\noffset_mode = \"{mode}\"\n[parked_retry]\nmax_attempts = 4"
            ))
            .unwrap()
        };
        let settings = keyed("transactional");
        assert_eq!((settings.key_order, settings.parked_retry.max_attempts), (KeyOrder::Key, 4));
        settings.validate().unwrap();
        match keyed("kafka").validate() {
            Err(SettingsError::Invalid { key: "key_order", problem }) => {
                assert!(problem.contains("transactional"), "{problem}")
            }
            other => panic!("expected a key_order error, got {other:?}"),
        }
        assert!(toml::from_str::<ConsumerSettings>("key_order = \"offset\"").is_err());
        let mut settings = keyed("transactional");
        settings.parked_retry.max_attempts = 0;
        assert!(matches!(settings.validate(), Err(SettingsError::Invalid { key: "parked_retry.max_attempts", .. })));
    }

    #[test]
    fn start_positions_round_trip_as_text() {
        for text in ["earliest", "latest", "2026-05-01T12:00:00.250Z"] {
            let start: StartPosition = text.parse().unwrap();
            assert_eq!(start.to_string(), text);
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_jitter_stays_in_bounds() {
        let policy = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            jitter: 0.5,
        };
        assert_eq!(policy.backoff(1, 0.5), Duration::from_millis(100));
        assert_eq!(policy.backoff(2, 0.5), Duration::from_millis(200));
        assert_eq!(policy.backoff(4, 0.5), Duration::from_millis(800));
        assert_eq!(policy.backoff(5, 0.5), Duration::from_secs(1));
        assert_eq!(policy.backoff(40, 0.5), Duration::from_secs(1), "no overflow");
        assert_eq!(policy.backoff(1, 0.0), Duration::from_millis(50));
        assert_eq!(policy.backoff(1, 1.0), Duration::from_millis(150));
        assert_eq!(policy.backoff(5, 1.0), Duration::from_secs(1), "jitter never passes the cap");
    }

    #[test]
    fn outage_backoff_starts_small_and_is_capped() {
        let outage = OutagePolicy::default();
        assert_eq!(outage.backoff(1, 0.5), Duration::from_millis(500));
        assert_eq!(outage.backoff(2, 0.5), Duration::from_secs(1));
        assert_eq!(outage.backoff(1_000, 0.5), Duration::from_secs(30));
        assert_eq!(outage.backoff(1_000, 1.0), Duration::from_secs(30), "jitter never passes the cap");
        assert_eq!(outage.backoff(1, 0.0), Duration::from_millis(400));
    }
}
