//! The event producer: idempotent, `acks=all`, answering only once the broker acknowledged.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::util::Timeout;
use serde::{Deserialize, Serialize};

use super::{KafkaSettings, Position};
use crate::envelope::Envelope;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProducerSettings {
    /// How long a record may wait for acknowledgement before the send fails (bounded, never a hang).
    #[serde(with = "humantime_serde")]
    pub delivery_timeout: Duration,
    /// How long the producer waits to fill a batch.
    #[serde(with = "humantime_serde")]
    pub linger: Duration,
    /// `none`, `gzip`, `snappy`, `lz4` or `zstd`.
    pub compression: String,
}

impl Default for ProducerSettings {
    fn default() -> Self {
        Self { delivery_timeout: Duration::from_secs(10), linger: Duration::from_millis(5), compression: "lz4".to_owned() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("cannot create the Kafka producer: {0}")]
    Create(#[source] KafkaError),
    #[error("the broker did not acknowledge the record: {0}")]
    NotAcknowledged(#[source] KafkaError),
}

/// One record to publish: the Confluent-framed value, the aggregate key and the envelope.
pub struct OutgoingEvent<'a> {
    pub topic: &'a str,
    pub key: &'a str,
    pub value: &'a [u8],
    pub envelope: &'a Envelope,
}

/// The producer, replaced by a fresh one after a failed delivery.
///
/// Why: when a record times out, librdkafka's idempotent producer bumps its epoch with
/// `InitProducerId` (KIP-360). Tansu 0.6.0 answers that with an unknown error, and from then on
/// every send of that producer fails even once the broker is back; a new producer (a new
/// producer id) works at once. On Apache Kafka the replacement is merely unnecessary. Records
/// already handed to the old producer finish with it: each pending delivery keeps it alive.
#[derive(Clone)]
pub struct EventProducer {
    shared: Arc<Shared>,
}

struct Shared {
    current: RwLock<Generation>,
    kafka: KafkaSettings,
    settings: ProducerSettings,
}

#[derive(Clone)]
struct Generation {
    number: u64,
    producer: FutureProducer,
}

impl Shared {
    fn current(&self) -> Generation {
        match self.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// After a failed delivery by generation `number`: replaces it unless that already happened.
    fn replace_after_failure(&self, number: u64) {
        let mut current = match self.current.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if current.number != number {
            return;
        }
        match create(&self.kafka, &self.settings) {
            Ok(producer) => {
                tracing::info!(generation = number + 1, "replaced the Kafka producer after a failed delivery");
                *current = Generation { number: number + 1, producer };
            }
            Err(error) => tracing::error!(%error, "cannot create a replacement Kafka producer"),
        }
    }
}

fn create(kafka: &KafkaSettings, settings: &ProducerSettings) -> Result<FutureProducer, ProduceError> {
    let mut config = kafka.client_config();
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", &settings.compression)
        .set("linger.ms", settings.linger.as_millis().to_string())
        .set("message.timeout.ms", settings.delivery_timeout.as_millis().to_string());
    config.create().map_err(ProduceError::Create)
}

impl EventProducer {
    /// The delivery guarantees (`enable.idempotence`, `acks=all`) are set after the pass-through
    /// properties, so they cannot be loosened by configuration.
    pub fn new(kafka: &KafkaSettings, settings: &ProducerSettings) -> Result<Self, ProduceError> {
        let producer = create(kafka, settings)?;
        Ok(Self {
            shared: Arc::new(Shared {
                current: RwLock::new(Generation { number: 0, producer }),
                kafka: kafka.clone(),
                settings: settings.clone(),
            }),
        })
    }

    /// Publishes one event and waits for the broker's acknowledgement.
    pub async fn send(&self, event: OutgoingEvent<'_>) -> Result<Position, ProduceError> {
        self.enqueue(event).await?.await
    }

    /// Hands one event to the producer now and returns the wait for its acknowledgement.
    /// Events enqueued one after another keep that order within their partition (the producer
    /// is idempotent), however their acknowledgements are awaited. When the local queue is
    /// full, this waits for room, at most the delivery timeout.
    pub async fn enqueue(
        &self,
        event: OutgoingEvent<'_>,
    ) -> Result<impl std::future::Future<Output = Result<Position, ProduceError>> + Send + 'static, ProduceError> {
        let generation = self.shared.current();
        let deadline = tokio::time::Instant::now() + self.shared.settings.delivery_timeout;
        let mut record = FutureRecord::to(event.topic)
            .key(event.key)
            .payload(event.value)
            .headers(event.envelope.to_headers())
            .timestamp(event.envelope.time.timestamp_millis());
        let delivery = loop {
            match generation.producer.send_result(record) {
                Ok(delivery) => break delivery,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned))
                    if tokio::time::Instant::now() < deadline =>
                {
                    record = returned;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((error, _)) => {
                    // A producer in librdkafka's fatal state refuses every record at once.
                    self.shared.replace_after_failure(generation.number);
                    return Err(ProduceError::NotAcknowledged(error));
                }
            }
        };
        let topic = event.topic.to_owned();
        let shared = self.shared.clone();
        // The delivery is watched by a task of its own, so a failed one replaces the producer
        // even when the caller stopped waiting (a request that timed out).
        let (answer, answered) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let outcome = match delivery.await {
                Ok(Ok(delivered)) => Ok(Position { topic, partition: delivered.partition, offset: delivered.offset }),
                Ok(Err((error, _message))) => Err(ProduceError::NotAcknowledged(error)),
                Err(_canceled) => Err(ProduceError::NotAcknowledged(KafkaError::Canceled)),
            };
            if outcome.is_err() {
                shared.replace_after_failure(generation.number);
            }
            drop(generation);
            let _ = answer.send(outcome);
        });
        Ok(async move { answered.await.unwrap_or(Err(ProduceError::NotAcknowledged(KafkaError::Canceled))) })
    }

    /// Waits for every queued record to be acknowledged (shutdown).
    pub fn flush(&self, timeout: Duration) -> Result<(), ProduceError> {
        self.shared.current().producer.flush(Timeout::After(timeout)).map_err(ProduceError::NotAcknowledged)
    }
}
