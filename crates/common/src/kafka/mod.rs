//! Kafka clients: settings shared by every client, the producer, and topic administration.

pub mod admin;
pub mod consumer;
pub mod local_broker;
pub mod producer;

use std::collections::BTreeMap;

use rdkafka::config::ClientConfig;
use serde::{Deserialize, Serialize};

/// The `[kafka]` section: where the brokers are and any librdkafka property to pass through.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KafkaSettings {
    /// Comma-separated `host:port` list.
    pub bootstrap_servers: String,
    pub client_id: String,
    /// Extra librdkafka properties (e.g. `security.protocol`, `sasl.mechanism`), applied last.
    pub properties: BTreeMap<String, String>,
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
