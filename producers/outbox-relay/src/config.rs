//! The `[outbox_relay]` config section (`EVENTLINE_OUTBOX_RELAY__<KEY>` in the environment).

use std::time::Duration;

use eventline_common::config::Secret;
use serde::{Deserialize, Serialize};

use crate::domain::{ChannelName, InvalidName, TableName};

pub const DEFAULT_TABLE: &str = "eventline_outbox";
pub const DEFAULT_CHANNEL: &str = "eventline_outbox";
pub const DEFAULT_BATCH_SIZE: u32 = 500;
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);
pub const DEFAULT_SOURCE: &str = "/eventline/outbox-relay";
pub const DEFAULT_MAX_ATTEMPTS: u32 = 10;
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8083";
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(15);
/// The most rows one batch may hold.
pub const MAX_BATCH_SIZE: u32 = 10_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxRelaySettings {
    /// The upstream service's PostgreSQL holding the outbox (`postgres://…`); empty = the relay is
    /// off (the `eventline up` default).
    pub database_url: Secret,
    /// The outbox table, `[schema.]table`.
    pub table: String,
    /// The channel the table's insert trigger notifies.
    pub channel: String,
    /// The most rows claimed and published in one database transaction.
    pub batch_size: u32,
    /// How often to look for rows when no notification arrives (the fallback to LISTEN/NOTIFY).
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Create the table, its index and its notify trigger at start-up if they do not exist
    /// (local use and tests; in production the upstream owns its schema and applies `sql/outbox.sql`).
    pub create_table: bool,
    /// The CloudEvents `source` of rows whose `source` column is NULL.
    pub source: String,
    /// How many times a record the broker refuses (too large, invalid) is tried before the row is
    /// rejected; 0 = never give up. An unreachable broker never counts.
    pub max_attempts: u32,
    /// Address of `/health/live`, `/health/ready` and `/metrics` (standalone binary).
    pub listen: String,
    /// How long the in-flight batch may take to finish at shutdown (standalone binary).
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
}

impl Default for OutboxRelaySettings {
    fn default() -> Self {
        Self {
            database_url: Secret::default(),
            table: DEFAULT_TABLE.to_owned(),
            channel: DEFAULT_CHANNEL.to_owned(),
            batch_size: DEFAULT_BATCH_SIZE,
            poll_interval: DEFAULT_POLL_INTERVAL,
            create_table: false,
            source: DEFAULT_SOURCE.to_owned(),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            listen: DEFAULT_LISTEN.to_owned(),
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("outbox_relay.database_url is empty: set it (EVENTLINE_OUTBOX_RELAY__DATABASE_URL) to the upstream PostgreSQL that holds the outbox table")]
    Disabled,
    #[error("outbox_relay.database_url must be a postgres:// URL")]
    NotPostgres,
    #[error("outbox_relay.table: {0}")]
    Table(#[source] InvalidName),
    #[error("outbox_relay.channel: {0}")]
    Channel(#[source] InvalidName),
    #[error("outbox_relay.batch_size must be between 1 and {MAX_BATCH_SIZE}, not {0}")]
    BatchSize(u32),
    #[error("outbox_relay.poll_interval must be more than zero")]
    PollInterval,
    #[error("outbox_relay.source must not be empty")]
    Source,
}

/// The settings, checked: what the relay runs with.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    pub database_url: Secret,
    pub table: TableName,
    pub channel: ChannelName,
    pub batch_size: u32,
    pub poll_interval: Duration,
    pub create_table: bool,
    pub source: String,
    pub max_attempts: u32,
}

impl OutboxRelaySettings {
    /// `false` when no database is configured: the relay is off.
    pub fn is_enabled(&self) -> bool {
        !self.database_url.is_empty()
    }

    pub fn validate(&self) -> Result<RelayConfig, SettingsError> {
        if !self.is_enabled() {
            return Err(SettingsError::Disabled);
        }
        let url = self.database_url.expose();
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(SettingsError::NotPostgres);
        }
        if !(1..=MAX_BATCH_SIZE).contains(&self.batch_size) {
            return Err(SettingsError::BatchSize(self.batch_size));
        }
        if self.poll_interval.is_zero() {
            return Err(SettingsError::PollInterval);
        }
        if self.source.is_empty() {
            return Err(SettingsError::Source);
        }
        Ok(RelayConfig {
            database_url: self.database_url.clone(),
            table: TableName::parse(&self.table).map_err(SettingsError::Table)?,
            channel: ChannelName::parse(&self.channel).map_err(SettingsError::Channel)?,
            batch_size: self.batch_size,
            poll_interval: self.poll_interval,
            create_table: self.create_table,
            source: self.source.clone(),
            max_attempts: self.max_attempts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventline_common::config::{ConfigSource, Section};

    #[test]
    fn by_default_the_relay_is_off_and_says_how_to_turn_it_on() {
        let settings: OutboxRelaySettings = ConfigSource::from_toml("").unwrap().section(Section::OutboxRelay).unwrap();
        assert_eq!(settings, OutboxRelaySettings::default());
        assert!(!settings.is_enabled());
        let err = settings.validate().unwrap_err().to_string();
        assert!(err.contains("EVENTLINE_OUTBOX_RELAY__DATABASE_URL"), "{err}");
    }

    #[test]
    fn file_values_apply_and_the_url_is_never_printed() {
        let source = ConfigSource::from_toml(
            "[outbox_relay]\ndatabase_url = \"postgres://shop:hunter2@db/shop\"\ntable = \"app.outbox\"\n\
             poll_interval = \"250ms\"\nbatch_size = 50\ncreate_table = true\nmax_attempts = 0",
        )
        .unwrap();
        let settings: OutboxRelaySettings = source.section(Section::OutboxRelay).unwrap();
        assert!(!format!("{settings:?}").contains("hunter2"));
        let config = settings.validate().unwrap();
        assert_eq!(config.table.to_string(), "app.outbox");
        assert_eq!(config.channel.as_str(), DEFAULT_CHANNEL);
        assert_eq!(config.poll_interval, Duration::from_millis(250));
        assert_eq!((config.batch_size, config.max_attempts, config.create_table), (50, 0, true));
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors_that_name_them() {
        let typo = ConfigSource::from_toml("[outbox_relay]\nbatchsize = 5").unwrap();
        let err = typo.section::<OutboxRelaySettings>(Section::OutboxRelay).unwrap_err().to_string();
        assert!(err.contains("batchsize"), "{err}");

        let on = |f: fn(&mut OutboxRelaySettings)| {
            let mut s = OutboxRelaySettings { database_url: Secret::new("postgres://h/db"), ..Default::default() };
            f(&mut s);
            s.validate().map(|_| ()).map_err(|e| e.to_string())
        };
        assert!(on(|_| {}).is_ok());
        assert!(on(|s| s.batch_size = 0).unwrap_err().contains("batch_size"));
        assert!(on(|s| s.poll_interval = Duration::ZERO).unwrap_err().contains("poll_interval"));
        assert!(on(|s| s.table = "x; drop table y".into()).unwrap_err().contains("outbox_relay.table"));
        assert!(on(|s| s.channel = "a-b".into()).unwrap_err().contains("outbox_relay.channel"));
        assert!(on(|s| s.database_url = Secret::new("sqlite://x.db")).unwrap_err().contains("postgres"));
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail error type, test only
    fn the_environment_configures_the_relay() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("EVENTLINE_OUTBOX_RELAY__DATABASE_URL", "postgres://127.0.0.1/shop");
            jail.set_env("EVENTLINE_OUTBOX_RELAY__POLL_INTERVAL", "30s");
            let settings: OutboxRelaySettings =
                ConfigSource::load(None).unwrap().section(Section::OutboxRelay).unwrap();
            assert!(settings.is_enabled());
            assert_eq!(settings.poll_interval, Duration::from_secs(30));
            Ok(())
        });
    }
}
