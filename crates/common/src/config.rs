//! Typed, layered configuration.
//!
//! Every service reads the same sources, in this order (later wins):
//! 1. built-in defaults (each section's `Default`, chosen so `eventline up` works as is);
//! 2. an optional TOML file (`--config FILE` or `EVENTLINE_CONFIG`);
//! 3. environment variables `EVENTLINE_<SECTION>__<KEY>`, e.g. `EVENTLINE_KAFKA__BOOTSTRAP_SERVERS`.
//!
//! The file is one document with a table per [`Section`], and a table per consumer service under
//! `[consumers.<name>]` (e.g. `[consumers.projector]`, `EVENTLINE_CONSUMERS__PROJECTOR__LISTEN`).
//! An unknown table or an unknown key inside a table is an error that names it; durations are
//! written like `"10s"` or `"250ms"`. Consumer names are checked by whoever knows them all
//! ([`ConfigSource::check_consumers`], called by the `eventline` command).

use std::fmt;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::{Figment, Provider as _};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Environment variable prefix for every setting.
pub const ENV_PREFIX: &str = "EVENTLINE_";
/// Environment variable naming the config file, when `--config` is not given.
pub const CONFIG_FILE_ENV: &str = "EVENTLINE_CONFIG";

/// The tables a config file may contain. One place lists them all, so a typo is caught.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Telemetry,
    Kafka,
    Database,
    Registry,
    SchemaRegistry,
    Ingest,
    OutboxRelay,
    /// `[consumers.<name>]`: one table per consumer service, named by the service.
    Consumers,
    Up,
    Admin,
}

impl Section {
    pub const ALL: [Section; 10] = [
        Section::Telemetry,
        Section::Kafka,
        Section::Database,
        Section::Registry,
        Section::SchemaRegistry,
        Section::Ingest,
        Section::OutboxRelay,
        Section::Consumers,
        Section::Up,
        Section::Admin,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Section::Telemetry => "telemetry",
            Section::Kafka => "kafka",
            Section::Database => "database",
            Section::Registry => "registry",
            Section::SchemaRegistry => "schema_registry",
            Section::Ingest => "ingest",
            Section::OutboxRelay => "outbox_relay",
            Section::Consumers => "consumers",
            Section::Up => "up",
            Section::Admin => "admin",
        }
    }

    /// The environment variable for `key` in this section, e.g. `EVENTLINE_KAFKA__BOOTSTRAP_SERVERS`.
    pub fn env_var(self, key: &str) -> String {
        format!("{ENV_PREFIX}{}__{}", self.key(), key).to_uppercase()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path} does not exist")]
    MissingFile { path: PathBuf },
    #[error("environment variable {name} is not of the form EVENTLINE_<SECTION>__<KEY> (two underscores between section and key)")]
    MalformedEnvVar { name: String },
    #[error("unknown config section `{name}` (known: {known})")]
    UnknownSection { name: String, known: String },
    #[error("unknown consumer `{name}` in [consumers] (known: {known})")]
    UnknownConsumer { name: String, known: String },
    #[error("invalid config in section `{section}`: {source}")]
    Invalid {
        section: String,
        #[source]
        source: Box<figment::Error>,
    },
}

/// The merged file and environment, from which each service extracts the sections it uses.
#[derive(Clone)]
pub struct ConfigSource {
    figment: Figment,
}

impl ConfigSource {
    /// Loads the file (if any; `EVENTLINE_CONFIG` when `file` is `None`) and the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let file = file.map(Path::to_path_buf).or_else(|| std::env::var_os(CONFIG_FILE_ENV).map(PathBuf::from));
        let mut figment = Figment::new();
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::MissingFile { path });
            }
            figment = figment.merge(Toml::file(path));
        }
        if let Some(name) = std::env::vars_os()
            .filter_map(|(name, _)| name.into_string().ok())
            .find(|name| name.starts_with(ENV_PREFIX) && name != CONFIG_FILE_ENV && !name.contains("__"))
        {
            return Err(ConfigError::MalformedEnvVar { name });
        }
        let figment = figment.merge(Env::prefixed(ENV_PREFIX).ignore(&["CONFIG"]).split("__").lowercase(true));
        Self::checked(figment)
    }

    /// A source from TOML text alone (tests and embedded defaults).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Self::checked(Figment::from(Toml::string(text)))
    }

    fn checked(figment: Figment) -> Result<Self, ConfigError> {
        let known: Vec<&str> = Section::ALL.iter().map(|s| s.key()).collect();
        let data = figment
            .data()
            .map_err(|source| ConfigError::Invalid { section: "(file)".to_owned(), source: Box::new(source) })?;
        for dict in data.values() {
            for name in dict.keys() {
                if !known.contains(&name.as_str()) {
                    return Err(ConfigError::UnknownSection { name: name.clone(), known: known.join(", ") });
                }
            }
        }
        Ok(Self { figment })
    }

    /// The settings of one section: its defaults, overridden by the file, then the environment.
    /// The section type should carry `#[serde(deny_unknown_fields)]` so typos are errors.
    pub fn section<T>(&self, section: Section) -> Result<T, ConfigError>
    where
        T: DeserializeOwned + Serialize + Default,
    {
        self.extract(section.key(), T::default())
    }

    /// The settings of the consumer service `name` (`[consumers.<name>]`): `defaults`,
    /// overridden by the file, then the environment.
    pub fn consumer<T>(&self, name: &str, defaults: T) -> Result<T, ConfigError>
    where
        T: DeserializeOwned + Serialize,
    {
        self.extract(&format!("{}.{name}", Section::Consumers.key()), defaults)
    }

    /// The table at `key`: `defaults`, overridden by the file, then the environment.
    fn extract<T>(&self, key: &str, defaults: T) -> Result<T, ConfigError>
    where
        T: DeserializeOwned + Serialize,
    {
        Figment::from(Serialized::defaults(defaults))
            .merge(self.figment.focus(key))
            .extract()
            .map_err(|source| ConfigError::Invalid { section: key.to_owned(), source: Box::new(source) })
    }

    /// Refuses a `[consumers.<name>]` table whose name is not in `known` (a typo would
    /// otherwise leave that consumer on its defaults).
    pub fn check_consumers(&self, known: &[&str]) -> Result<(), ConfigError> {
        let consumers = self.figment.focus(Section::Consumers.key());
        let data = consumers
            .data()
            .map_err(|source| ConfigError::Invalid { section: "consumers".to_owned(), source: Box::new(source) })?;
        for dict in data.values() {
            if let Some(name) = dict.keys().find(|name| !known.contains(&name.as_str())) {
                return Err(ConfigError::UnknownConsumer { name: name.clone(), known: known.join(", ") });
            }
        }
        Ok(())
    }
}

/// A secret (token, password): never printed by `Debug` or `Display`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's test jail returns its own large error type
mod tests {
    use super::*;
    use std::time::Duration;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Demo {
        port: u16,
        #[serde(with = "humantime_serde")]
        timeout: Duration,
        token: Secret,
    }

    impl Default for Demo {
        fn default() -> Self {
            Self { port: 8080, timeout: Duration::from_secs(5), token: Secret::default() }
        }
    }

    #[test]
    fn defaults_apply_when_the_section_is_absent() {
        let source = ConfigSource::from_toml("").unwrap();
        let demo: Demo = source.section(Section::Registry).unwrap();
        assert_eq!(demo, Demo::default());
    }

    #[test]
    fn file_values_override_defaults_and_durations_parse() {
        let source = ConfigSource::from_toml("[registry]\nport = 9000\ntimeout = \"250ms\"").unwrap();
        let demo: Demo = source.section(Section::Registry).unwrap();
        assert_eq!(demo.port, 9000);
        assert_eq!(demo.timeout, Duration::from_millis(250));
    }

    #[test]
    fn unknown_key_is_an_error_naming_it() {
        let source = ConfigSource::from_toml("[registry]\nprot = 9000").unwrap();
        let err = source.section::<Demo>(Section::Registry).unwrap_err().to_string();
        assert!(err.contains("prot"), "{err}");
        assert!(err.contains("registry"), "{err}");
    }

    #[test]
    fn unknown_section_is_an_error_naming_it() {
        let err = ConfigSource::from_toml("[regsitry]\nport = 1").err().unwrap().to_string();
        assert!(err.contains("regsitry"), "{err}");
    }

    #[test]
    fn wrong_type_is_an_error() {
        let source = ConfigSource::from_toml("[registry]\ntimeout = \"soon\"").unwrap();
        assert!(source.section::<Demo>(Section::Registry).is_err());
    }

    #[test]
    fn environment_overrides_the_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("el.toml", "[registry]\nport = 9000")?;
            jail.set_env("EVENTLINE_REGISTRY__PORT", "9100");
            let source = ConfigSource::load(Some(Path::new("el.toml"))).unwrap();
            let demo: Demo = source.section(Section::Registry).unwrap();
            assert_eq!(demo.port, 9100);
            Ok(())
        });
    }

    #[test]
    fn an_environment_variable_without_a_section_separator_is_an_error() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("EVENTLINE_KAFKA_BOOTSTRAP_SERVERS", "x:1");
            let err = ConfigSource::load(None).err().unwrap().to_string();
            assert!(err.contains("EVENTLINE_KAFKA_BOOTSTRAP_SERVERS"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn a_consumer_reads_its_own_table_and_unknown_consumers_are_refused() {
        let source = ConfigSource::from_toml("[consumers.counter]\nport = 9000").unwrap();
        let demo: Demo = source.consumer("counter", Demo::default()).unwrap();
        assert_eq!(demo.port, 9000);
        let other: Demo = source.consumer("other", Demo { port: 1, ..Demo::default() }).unwrap();
        assert_eq!(other.port, 1, "a consumer without a table keeps its defaults");
        assert!(source.check_consumers(&["counter", "other"]).is_ok());
        let err = source.check_consumers(&["other"]).unwrap_err().to_string();
        assert!(err.contains("`counter`") && err.contains("known: other"), "{err}");
        let typo = ConfigSource::from_toml("[consumers.counter]\nprot = 9000").unwrap();
        let err = typo.consumer("counter", Demo::default()).unwrap_err().to_string();
        assert!(err.contains("prot") && err.contains("consumers.counter"), "{err}");
    }

    #[test]
    fn consumer_settings_come_from_the_environment_too() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("EVENTLINE_CONSUMERS__COUNTER__PORT", "9200");
            let source = ConfigSource::load(None).unwrap();
            let demo: Demo = source.consumer("counter", Demo::default()).unwrap();
            assert_eq!(demo.port, 9200);
            Ok(())
        });
    }

    #[test]
    fn secrets_are_not_printed() {
        let demo = Demo { token: Secret::new("hunter2"), ..Demo::default() };
        assert!(!format!("{demo:?}").contains("hunter2"));
    }
}
