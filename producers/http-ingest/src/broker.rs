//! Whether the Kafka cluster answers: a metadata request on a long-lived client (readiness).

use std::sync::Arc;
use std::time::Duration;

use eventline_common::kafka::KafkaSettings;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;

#[derive(Clone)]
pub struct BrokerProbe {
    client: Arc<BaseConsumer>,
}

impl BrokerProbe {
    pub fn new(kafka: &KafkaSettings) -> Result<Self, KafkaError> {
        let client: BaseConsumer = kafka.client_config().create()?;
        Ok(Self { client: Arc::new(client) })
    }

    /// `Ok` when a broker answered a metadata request within `timeout`.
    pub async fn check(&self, timeout: Duration) -> Result<(), String> {
        let client = self.client.clone();
        let answered =
            tokio::task::spawn_blocking(move || client.fetch_metadata(None, timeout).map(|m| m.brokers().len()))
                .await
                .map_err(|e| format!("the broker check failed: {e}"))?;
        match answered {
            Ok(brokers) if brokers > 0 => Ok(()),
            Ok(_) => Err("the Kafka cluster reports no brokers".to_owned()),
            Err(error) => Err(format!("the Kafka brokers do not answer: {error}")),
        }
    }
}
