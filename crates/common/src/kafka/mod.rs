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
use serde::{Deserialize, Serialize};

/// The `[kafka]` section: where the brokers are and any librdkafka property to pass through.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KafkaSettings {
    /// Comma-separated `host:port` list.
    pub bootstrap_servers: String,
    pub client_id: String,
    /// Extra librdkafka properties (e.g. `security.protocol`, `sasl.mechanism`, `sasl.username`,
    /// `sasl.password`, `ssl.ca.location`), applied last.
    pub properties: BTreeMap<String, String>,
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
mod tests {
    use super::*;

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
