//! The `[registry]` config section (`EVENTLINE_REGISTRY__<KEY>` in the environment).

use std::time::Duration;

use eventline_common::config::Secret;
use serde::{Deserialize, Serialize};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8081";
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrySettings {
    /// Address the REST API listens on.
    pub listen: String,
    /// Bearer token required for writes (register, delete, config changes); empty = writes open.
    pub write_token: Secret,
    /// Largest accepted request body; larger requests get 413.
    pub max_body_bytes: usize,
    /// How long in-flight requests may take to finish at shutdown (standalone binary only).
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
}

impl Default for RegistrySettings {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.to_owned(),
            write_token: Secret::default(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventline_common::config::{ConfigSource, Section};

    #[test]
    fn defaults_work_without_a_file() {
        let source = ConfigSource::from_toml("").unwrap();
        let settings: RegistrySettings = source.section(Section::Registry).unwrap();
        assert_eq!(settings, RegistrySettings::default());
        assert_eq!(settings.listen, "127.0.0.1:8081");
        assert!(settings.write_token.is_empty());
    }

    #[test]
    fn file_values_apply_and_unknown_keys_are_rejected() {
        let source = ConfigSource::from_toml(
            "[registry]\nlisten = \"0.0.0.0:9999\"\nwrite_token = \"s3cret\"\ndrain_timeout = \"2s\"",
        )
        .unwrap();
        let settings: RegistrySettings = source.section(Section::Registry).unwrap();
        assert_eq!(settings.listen, "0.0.0.0:9999");
        assert_eq!(settings.write_token.expose(), "s3cret");
        assert_eq!(settings.drain_timeout, Duration::from_secs(2));
        assert!(!format!("{settings:?}").contains("s3cret"));

        let typo = ConfigSource::from_toml("[registry]\nwrite_tokn = \"x\"").unwrap();
        let err = typo.section::<RegistrySettings>(Section::Registry).unwrap_err().to_string();
        assert!(err.contains("write_tokn"), "{err}");
    }
}
