//! Kafka clients: settings shared by every client, the connection check made at start-up, the
//! producer, and topic administration.

pub mod admin;
pub mod connection;
pub mod consumer;
pub mod local_broker;
pub mod producer;

use std::collections::BTreeMap;
use std::fmt;

use rdkafka::config::ClientConfig;
use serde::{Deserialize, Deserializer, Serialize};

/// The `[kafka]` section: where the brokers are and any librdkafka property to pass through.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KafkaSettings {
    /// Comma-separated `host:port` list.
    pub bootstrap_servers: String,
    pub client_id: String,
    /// Extra librdkafka properties (e.g. `security.protocol`, `sasl.mechanism`, `sasl.username`,
    /// `sasl.password`, `ssl.ca.location`), applied last. Nested keys are joined with dots, so
    /// TOML may write them quoted (`"sasl.mechanism" = "SCRAM-SHA-512"`) or dotted, and the
    /// environment with `__` for each dot (`EVENTLINE_KAFKA__PROPERTIES__SASL__MECHANISM`).
    #[serde(deserialize_with = "dotted_properties")]
    pub properties: BTreeMap<String, String>,
}

/// A property as a config source gives it: text; what the environment's parser made of text
/// (a number, a boolean); or a table of the names below a dot.
#[derive(Deserialize)]
#[serde(untagged)]
enum PropertyValue {
    Text(String),
    Bool(bool),
    Integer(i64),
    Unsigned(u64),
    Float(f64),
    Table(BTreeMap<String, PropertyValue>),
}

fn dotted_properties<'de, D: Deserializer<'de>>(deserializer: D) -> Result<BTreeMap<String, String>, D::Error> {
    fn flatten(prefix: &str, table: BTreeMap<String, PropertyValue>, into: &mut BTreeMap<String, String>) {
        for (key, value) in table {
            let name = if prefix.is_empty() { key } else { format!("{prefix}.{key}") };
            let text = match value {
                PropertyValue::Text(text) => text,
                PropertyValue::Bool(flag) => flag.to_string(),
                PropertyValue::Integer(number) => number.to_string(),
                PropertyValue::Unsigned(number) => number.to_string(),
                PropertyValue::Float(number) => number.to_string(),
                PropertyValue::Table(table) => {
                    flatten(&name, table, into);
                    continue;
                }
            };
            into.insert(name, text);
        }
    }
    let mut properties = BTreeMap::new();
    flatten("", BTreeMap::deserialize(deserializer)?, &mut properties);
    Ok(properties)
}

/// Shows the properties, those that hold a secret (`sasl.password`, `ssl.key.password`, ...) as
/// `***`.
impl fmt::Debug for KafkaSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let properties: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(key, value)| {
                let secret = key.contains("password") || key.contains("secret");
                (key.as_str(), if secret { "***" } else { value.as_str() })
            })
            .collect();
        f.debug_struct("KafkaSettings")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("client_id", &self.client_id)
            .field("properties", &properties)
            .finish()
    }
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self {
            bootstrap_servers: "127.0.0.1:9092".to_owned(),
            client_id: "eventline".to_owned(),
            properties: BTreeMap::new(),
        }
    }
}

impl KafkaSettings {
    pub fn for_bootstrap(bootstrap_servers: impl Into<String>) -> Self {
        Self { bootstrap_servers: bootstrap_servers.into(), ..Self::default() }
    }

    /// A librdkafka config with the bootstrap servers, client id and pass-through properties.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap_servers)
            .set("client.id", &self.client_id)
            .set("log_level", "4");
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }
}

/// Where a record landed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's test jail returns its own large error type
mod tests {
    use super::*;
    use crate::config::{ConfigSource, Section};

    /// Both forms a user writes reach librdkafka as dotted names: TOML keys (quoted, or dotted
    /// keys, which TOML reads as nested tables) and environment variables with `__` for each dot
    /// (whose values the environment parser may take for numbers or booleans).
    #[test]
    fn properties_from_toml_and_the_environment_become_dotted_librdkafka_names() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "eventline.toml",
                "[kafka.properties]\n\"security.protocol\" = \"SASL_SSL\"\nsasl.mechanism = \"SCRAM-SHA-512\"\n",
            )?;
            jail.set_env("EVENTLINE_KAFKA__PROPERTIES__SASL__USERNAME", "alice");
            jail.set_env("EVENTLINE_KAFKA__PROPERTIES__SASL__PASSWORD", "12345");
            jail.set_env("EVENTLINE_KAFKA__PROPERTIES__SSL__CA__LOCATION", "/etc/eventline/ca.pem");
            jail.set_env("EVENTLINE_KAFKA__PROPERTIES__ENABLE__SSL__CERTIFICATE__VERIFICATION", "true");
            jail.set_env("EVENTLINE_KAFKA__PROPERTIES__LOG_LEVEL", "6");
            // Quoted, a value is kept as written (unquoted, `0123` would be read as the number 123).
            jail.set_env("EVENTLINE_KAFKA__PROPERTIES__SSL__KEY__PASSWORD", "\"0123\"");
            let source = ConfigSource::load(Some(std::path::Path::new("eventline.toml"))).unwrap();
            let kafka: KafkaSettings = source.section(Section::Kafka).unwrap();
            let expected: BTreeMap<String, String> = [
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanism", "SCRAM-SHA-512"),
                ("sasl.username", "alice"),
                ("sasl.password", "12345"),
                ("ssl.ca.location", "/etc/eventline/ca.pem"),
                ("enable.ssl.certificate.verification", "true"),
                ("log_level", "6"),
                ("ssl.key.password", "0123"),
            ]
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value.to_owned()))
            .collect();
            assert_eq!(kafka.properties, expected);
            Ok(())
        });
    }

    #[test]
    fn debug_output_hides_passwords() {
        let mut settings = KafkaSettings::default();
        settings.properties.insert("sasl.username".into(), "alice".into());
        settings.properties.insert("sasl.password".into(), "alice-secret".into());
        settings.properties.insert("ssl.key.password".into(), "key-secret".into());
        let shown = format!("{settings:?}");
        assert!(shown.contains("alice") && shown.contains("sasl.password"), "{shown}");
        assert!(!shown.contains("alice-secret") && !shown.contains("key-secret"), "{shown}");
    }
}
