//! The projector's settings: the `[consumers.projector]` table (`EVENTLINE_CONSUMERS__PROJECTOR__…`).

use std::time::Duration;

use eventline_common::kafka::consumer::{ConsumerSettings, OffsetMode};
use serde::{Deserialize, Serialize};

/// The consumer group of the projector.
pub const GROUP_ID: &str = "eventline-projector";
/// The topics the projector reads (the catalog's).
pub const TOPICS: [&str; 3] = ["orders", "payments", "customers"];
/// The event types the projector applies; others on its topics are skipped.
pub const EVENT_TYPES: [&str; 9] = [
    "OrderPlaced",
    "OrderCancelled",
    "OrderShipped",
    "PaymentAuthorized",
    "PaymentCaptured",
    "PaymentFailed",
    "PaymentRefunded",
    "CustomerRegistered",
    "CustomerEmailChanged",
];

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("projector setting `{key}` {problem}")]
    Invalid { key: &'static str, problem: &'static str },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProjectorSettings {
    /// Where the query API listens.
    pub listen: String,
    /// The longest a read-your-writes request waits for the read model to reach its position.
    #[serde(with = "humantime_serde")]
    pub wait_timeout: Duration,
    /// The page size of a list when the request names none.
    pub default_page_size: u32,
    /// The largest page size a request may ask for.
    pub max_page_size: u32,
    /// How long a drain may take at shutdown.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// The consumer (group `eventline-projector`, the catalog's topics, transactional offsets).
    pub consumer: ConsumerSettings,
}

impl Default for ProjectorSettings {
    fn default() -> Self {
        let mut consumer = ConsumerSettings::new(GROUP_ID, TOPICS);
        consumer.event_types = EVENT_TYPES.iter().map(|t| (*t).to_owned()).collect();
        consumer.offset_mode = OffsetMode::Transactional;
        Self {
            listen: "127.0.0.1:8082".to_owned(),
            wait_timeout: Duration::from_secs(5),
            default_page_size: 20,
            max_page_size: 100,
            drain_timeout: Duration::from_secs(30),
            consumer,
        }
    }
}

eventline_common::service_settings!(ProjectorSettings);

impl ProjectorSettings {
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.default_page_size == 0 || self.default_page_size > self.max_page_size {
            return Err(ConfigError::Invalid {
                key: "default_page_size",
                problem: "must be at least 1 and at most max_page_size",
            });
        }
        if self.consumer.offset_mode != OffsetMode::Transactional {
            return Err(ConfigError::Invalid {
                key: "consumer.offset_mode",
                problem: "must be \"transactional\": rows and offsets commit together",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_unknown_keys_are_refused() {
        let settings = ProjectorSettings::default();
        assert_eq!(settings.check(), Ok(()));
        assert_eq!(settings.listen, "127.0.0.1:8082");
        assert_eq!(settings.consumer.group_id, GROUP_ID);
        let parsed: ProjectorSettings = serde_json::from_str(r#"{"wait_timeout": "250ms"}"#).unwrap();
        assert_eq!(parsed.wait_timeout, Duration::from_millis(250));
        assert!(serde_json::from_str::<ProjectorSettings>(r#"{"wait_timout": "1s"}"#).is_err());
    }

    #[test]
    fn kafka_offsets_are_refused() {
        let mut settings = ProjectorSettings::default();
        settings.consumer.offset_mode = OffsetMode::Kafka;
        assert!(settings.check().is_err());
    }
}
