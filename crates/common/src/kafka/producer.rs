//! The event producer: idempotent, `acks=all`, answering only once the broker acknowledged.
//! Everything published with an idempotent producer goes through [`EventProducer`]: events
//! ([`OutgoingEvent`]) and records as they are ([`OutgoingRecord`]: dead letters, redrives).

use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::types::RDKafkaErrorCode;
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
        Self {
            delivery_timeout: Duration::from_secs(10),
            linger: Duration::from_millis(5),
            compression: "lz4".to_owned(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("cannot create the Kafka producer: {0}")]
    Create(#[source] KafkaError),
    #[error("the broker did not acknowledge the record: {0}")]
    NotAcknowledged(#[source] KafkaError),
}

impl ProduceError {
    /// The Kafka client's error underneath, for callers that report Kafka errors.
    pub fn into_kafka(self) -> KafkaError {
        match self {
            ProduceError::Create(error) | ProduceError::NotAcknowledged(error) => error,
        }
    }
}

/// One record to publish: the Confluent-framed value, the aggregate key and the envelope.
pub struct OutgoingEvent<'a> {
    pub topic: &'a str,
    pub key: &'a str,
    pub value: &'a [u8],
    pub envelope: &'a Envelope,
}

/// One record to publish as it is: raw key, payload and headers (dead letters, redrives).
pub struct OutgoingRecord<'a> {
    pub topic: &'a str,
    /// `None`: the partitioner chooses by key.
    pub partition: Option<i32>,
    pub key: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
    pub headers: OwnedHeaders,
    /// Milliseconds since the Unix epoch; `None`: when it is handed over.
    pub timestamp: Option<i64>,
}

impl<'a> OutgoingRecord<'a> {
    fn into_future_record(self) -> FutureRecord<'a, [u8], [u8]> {
        FutureRecord {
            topic: self.topic,
            partition: self.partition,
            key: self.key,
            payload: self.payload,
            headers: Some(self.headers),
            timestamp: self.timestamp,
        }
    }
}

/// The one producer every publish goes through: idempotent, `acks=all`, so a record that is
/// retried after a lost answer is written once and records of a partition keep their order.
///
/// A record not acknowledged within [`ProducerSettings::delivery_timeout`] fails (librdkafka's
/// `message.timeout.ms`), and the producer goes on: on a lost or timed-out batch librdkafka bumps
/// the producer epoch itself (KIP-360), which Apache Kafka accepts. (Until December 2026 this
/// type replaced and purged its producer at the first unacknowledged record, because Tansu
/// 0.6.0 panicked on that epoch bump; a real broker does not need it, and the replacement cost a
/// new producer id.)
#[derive(Clone)]
pub struct EventProducer {
    producer: Arc<Owned>,
    delivery_timeout: Duration,
}

/// The producer, destroyed off the async workers when the last clone lets go of it
/// (librdkafka's destroy blocks until its threads have stopped).
struct Owned(Option<FutureProducer>);

impl Owned {
    fn get(&self) -> &FutureProducer {
        self.0.as_ref().unwrap_or_else(|| unreachable!("taken only on drop"))
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        let Some(producer) = self.0.take() else { return };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(move || drop(producer))),
            Err(_) => drop(producer),
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
        Ok(Self {
            producer: Arc::new(Owned(Some(create(kafka, settings)?))),
            delivery_timeout: settings.delivery_timeout,
        })
    }

    /// Publishes one event and waits for the broker's acknowledgement.
    pub async fn send(&self, event: OutgoingEvent<'_>) -> Result<Position, ProduceError> {
        self.enqueue(event).await?.await
    }

    /// Hands one event to the producer now and returns the wait for its acknowledgement, which
    /// fails once the delivery timeout has passed since the hand-over. Events enqueued one after
    /// another keep that order within their partition (the producer is idempotent), however
    /// their acknowledgements are awaited. When the local queue is full, this waits for room, at
    /// most the delivery timeout.
    pub async fn enqueue(
        &self,
        event: OutgoingEvent<'_>,
    ) -> Result<impl std::future::Future<Output = Result<Position, ProduceError>> + Send + 'static, ProduceError> {
        self.enqueue_record(OutgoingRecord {
            topic: event.topic,
            partition: None,
            key: Some(event.key.as_bytes()),
            payload: Some(event.value),
            headers: event.envelope.to_headers(),
            timestamp: Some(event.envelope.time.timestamp_millis()),
        })
        .await
    }

    /// Publishes one record as it is and waits for the broker's acknowledgement.
    pub async fn send_record(&self, record: OutgoingRecord<'_>) -> Result<Position, ProduceError> {
        self.enqueue_record(record).await?.await
    }

    /// [`enqueue`](Self::enqueue) for a record as it is: the one hand-over every send goes
    /// through, with the same delivery deadline and ordering.
    pub async fn enqueue_record(
        &self,
        record: OutgoingRecord<'_>,
    ) -> Result<impl std::future::Future<Output = Result<Position, ProduceError>> + Send + 'static, ProduceError> {
        let room_deadline = tokio::time::Instant::now() + self.delivery_timeout;
        let topic = record.topic.to_owned();
        let mut record = record.into_future_record();
        let delivery = loop {
            match self.producer.get().send_result(record) {
                Ok(delivery) => break delivery,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned))
                    if tokio::time::Instant::now() < room_deadline =>
                {
                    record = returned;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((error, _)) => return Err(ProduceError::NotAcknowledged(error)),
            }
        };
        Ok(async move {
            match delivery.await {
                Ok(Ok(delivered)) => Ok(Position { topic, partition: delivered.partition, offset: delivered.offset }),
                Ok(Err((error, _message))) => Err(ProduceError::NotAcknowledged(error)),
                Err(_canceled) => Err(ProduceError::NotAcknowledged(KafkaError::Canceled)),
            }
        })
    }

    /// Waits for every queued record to be acknowledged (shutdown).
    pub fn flush(&self, timeout: Duration) -> Result<(), ProduceError> {
        self.producer.get().flush(Timeout::After(timeout)).map_err(ProduceError::NotAcknowledged)
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::mocking::MockCluster;

    use super::*;

    const TOPIC: &str = "orders";
    const BROKER: i32 = 1;

    /// Records that time out while the broker is down fail within the delivery timeout, and
    /// the same producer publishes again once the broker is back, with no gap and nothing of
    /// the failed records written (they never reached a broker).
    #[tokio::test]
    async fn the_producer_fails_records_in_time_while_the_broker_is_down_and_goes_on_after() {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic(TOPIC, 1, 1).unwrap();
        let mut kafka = KafkaSettings::for_bootstrap(cluster.bootstrap_servers());
        // Reconnect as soon as the broker is back, as to a restarted broker on the same host.
        kafka.properties.insert("reconnect.backoff.max.ms".into(), "100".into());
        let settings = ProducerSettings { delivery_timeout: Duration::from_secs(2), ..ProducerSettings::default() };
        let producer = EventProducer::new(&kafka, &settings).unwrap();
        let envelope = envelope();
        let event = || OutgoingEvent { topic: TOPIC, key: "k", value: b"v", envelope: &envelope };
        assert_eq!(producer.send(event()).await.unwrap().offset, 0, "the producer has its id and epoch");

        cluster.broker_down(BROKER).unwrap();
        let started = std::time::Instant::now();
        let first = producer.enqueue(event()).await.unwrap();
        let second = producer.enqueue(event()).await.unwrap();
        assert!(first.await.is_err(), "nothing is acknowledged while the broker is down");
        assert!(second.await.is_err(), "nothing is acknowledged while the broker is down");
        assert!(
            started.elapsed() < settings.delivery_timeout * 2,
            "failed within the delivery timeout: {:?}",
            started.elapsed()
        );
        cluster.broker_up(BROKER).unwrap();

        let after = producer.send(event()).await.expect("the same producer publishes once the broker is back");
        assert_eq!(after.offset, 1, "the failed records were not written");
        assert_eq!(producer.send(event()).await.unwrap().offset, 2);
    }

    fn envelope() -> Envelope {
        Envelope {
            id: uuid::Uuid::new_v4(),
            source: "/tests".into(),
            event_type: "t".into(),
            time: chrono::Utc::now(),
            subject: None,
            traceparent: None,
            correlation_id: None,
        }
    }
}
