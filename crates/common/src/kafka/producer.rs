//! The event producer: idempotent, `acks=all`, answering only once the broker acknowledged.
//! Everything published with an idempotent producer goes through [`EventProducer`]: events
//! ([`OutgoingEvent`]) and records as they are ([`OutgoingRecord`]: dead letters, redrives).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::OwnedHeaders;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _, PurgeConfig};
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

/// How much later than [`ProducerSettings::delivery_timeout`] librdkafka's own message timeout
/// is set, so that this module's deadline always comes first (see [`EventProducer`]).
const LIBRDKAFKA_TIMEOUT_MARGIN: Duration = Duration::from_secs(5);

/// The producer, retired and replaced by a fresh one as soon as a record is not acknowledged.
///
/// Why: when a record of librdkafka's idempotent producer times out or fails, librdkafka bumps
/// the producer epoch on its own, without asking the broker (KIP-360), and sends whatever is
/// still queued under the new epoch at once, in the same pass. Tansu 0.6.0 never handed out
/// that epoch: its SQLite engine panics on such a `Produce` ("more or less than one row" in
/// `idempotent_message_check`), which kills its storage task, and from then on the broker
/// answers every request with an error until it is restarted. So a producer must never send
/// anything after one of its records went unacknowledged:
/// - the delivery deadline is kept here, not by librdkafka: its `message.timeout.ms` is set
///   [`LIBRDKAFKA_TIMEOUT_MARGIN`] later, so librdkafka never times a record out (and never
///   bumps the epoch for it) before this deadline has retired the producer;
/// - retiring swaps in a fresh producer (a new producer id) and purges the old one's queued and
///   in-flight records, which fail with the one that missed its deadline; records are handed
///   over under the read lock, so none reaches the old producer after the swap.
///
/// Not covered: a broker answering a `Produce` with an error makes librdkafka bump the epoch
/// before the failure reaches this code, so records already queued behind go out under it.
/// On Apache Kafka the replacement is merely unnecessary.
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
    /// Shared by the current slot and every pending delivery; whoever holds the last one drops
    /// it off the async workers (librdkafka's destroy blocks).
    producer: Arc<FutureProducer>,
}

impl Shared {
    fn current(&self) -> std::sync::RwLockReadGuard<'_, Generation> {
        self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// After a record of generation `number` was not acknowledged: replaces that generation
    /// unless that already happened, and purges it so it never sends again. Returns once the
    /// purge is done, so a caller told its record failed never sees it sent later.
    async fn retire(&self, number: u64) {
        let retired = {
            let mut current = self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            if current.number != number {
                return;
            }
            match create(&self.kafka, &self.settings) {
                Ok(producer) => {
                    std::mem::replace(&mut *current, Generation { number: number + 1, producer: Arc::new(producer) })
                }
                Err(error) => {
                    tracing::error!(%error, "cannot create a replacement Kafka producer");
                    return;
                }
            }
        };
        tracing::info!(generation = number + 1, "replaced the Kafka producer after a record was not acknowledged");
        // librdkafka's purge waits for its broker threads: not on an async worker.
        let purged = tokio::task::spawn_blocking(move || {
            retired.producer.purge(PurgeConfig::default().queue().inflight());
            drop(retired);
        });
        if let Err(error) = purged.await {
            tracing::error!(%error, "cannot purge the retired Kafka producer");
        }
    }
}

/// Lets go of a producer; the last holder destroys it off the async workers.
fn release(producer: Arc<FutureProducer>) {
    if let Some(producer) = Arc::into_inner(producer) {
        off_the_workers(move || drop(producer));
    }
}

/// Runs blocking librdkafka work on the blocking pool when there is a runtime.
fn off_the_workers(work: impl FnOnce() + Send + 'static) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn_blocking(work)),
        Err(_) => work(),
    }
}

fn create(kafka: &KafkaSettings, settings: &ProducerSettings) -> Result<FutureProducer, ProduceError> {
    let librdkafka_timeout = settings.delivery_timeout + LIBRDKAFKA_TIMEOUT_MARGIN;
    let mut config = kafka.client_config();
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", &settings.compression)
        .set("linger.ms", settings.linger.as_millis().to_string())
        .set("message.timeout.ms", librdkafka_timeout.as_millis().to_string());
    config.create().map_err(ProduceError::Create)
}

impl EventProducer {
    /// The delivery guarantees (`enable.idempotence`, `acks=all`) are set after the pass-through
    /// properties, so they cannot be loosened by configuration.
    pub fn new(kafka: &KafkaSettings, settings: &ProducerSettings) -> Result<Self, ProduceError> {
        let producer = create(kafka, settings)?;
        Ok(Self {
            shared: Arc::new(Shared {
                current: RwLock::new(Generation { number: 0, producer: Arc::new(producer) }),
                kafka: kafka.clone(),
                settings: settings.clone(),
            }),
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
    /// through, with the same delivery deadline, ordering and retiring.
    pub async fn enqueue_record(
        &self,
        record: OutgoingRecord<'_>,
    ) -> Result<impl std::future::Future<Output = Result<Position, ProduceError>> + Send + 'static, ProduceError> {
        let timeout = self.shared.settings.delivery_timeout;
        let room_deadline = tokio::time::Instant::now() + timeout;
        let topic = record.topic.to_owned();
        let mut record = record.into_future_record();
        let (generation, delivery) = loop {
            // The read lock is held across the hand-over, so a retired producer gets no more records.
            let attempt = {
                let current = self.shared.current();
                match current.producer.send_result(record) {
                    Ok(delivery) => Ok((current.clone(), delivery)),
                    Err((error, returned)) => Err((current.number, error, returned)),
                }
            };
            match attempt {
                Ok(handed_over) => break handed_over,
                Err((_, KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned))
                    if tokio::time::Instant::now() < room_deadline =>
                {
                    record = returned;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((number, error, _)) => {
                    // A producer in librdkafka's fatal state refuses every record at once.
                    self.shared.retire(number).await;
                    return Err(ProduceError::NotAcknowledged(error));
                }
            }
        };
        let deadline = tokio::time::Instant::now() + timeout;
        let shared = self.shared.clone();
        // The delivery is watched by a task of its own, so a record that is not acknowledged
        // retires the producer even when the caller stopped waiting (a request that timed out).
        let (answer, answered) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let outcome = match tokio::time::timeout_at(deadline, delivery).await {
                Ok(Ok(Ok(delivered))) => {
                    Ok(Position { topic, partition: delivered.partition, offset: delivered.offset })
                }
                Ok(Ok(Err((error, _message)))) => Err(ProduceError::NotAcknowledged(error)),
                Ok(Err(_canceled)) => Err(ProduceError::NotAcknowledged(KafkaError::Canceled)),
                Err(_elapsed) => Err(ProduceError::NotAcknowledged(KafkaError::MessageProduction(
                    RDKafkaErrorCode::MessageTimedOut,
                ))),
            };
            if outcome.is_err() {
                shared.retire(generation.number).await;
            }
            release(generation.producer);
            let _ = answer.send(outcome);
        });
        Ok(async move { answered.await.unwrap_or(Err(ProduceError::NotAcknowledged(KafkaError::Canceled))) })
    }

    /// Waits for every queued record to be acknowledged (shutdown).
    pub fn flush(&self, timeout: Duration) -> Result<(), ProduceError> {
        let producer = self.shared.current().producer.clone();
        let flushed = producer.flush(Timeout::After(timeout)).map_err(ProduceError::NotAcknowledged);
        release(producer);
        flushed
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test
mod tests {
    use rdkafka::mocking::MockCluster;

    use super::*;

    const TOPIC: &str = "orders";
    const BROKER: i32 = 1;

    /// What crashes Tansu 0.6.0 (see [`EventProducer`]) is a record sent by a producer after
    /// one of its records went unacknowledged: librdkafka bumps the epoch on its own and sends
    /// what is queued under it. The mock cluster accepts that epoch (it checks epochs of
    /// transactional producers only) and acknowledges the record, so the test pins that such a
    /// record is never sent: it fails with the one ahead of it, and nothing of it is written.
    #[tokio::test]
    async fn a_record_queued_behind_an_unacknowledged_one_fails_with_it_and_is_never_sent() {
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
        let first = producer.enqueue(event()).await.unwrap();
        // Not a wait for a condition: the second record must still be within its own delivery
        // timeout when the first one's has passed.
        tokio::time::sleep(settings.delivery_timeout * 3 / 4).await;
        let behind = producer.enqueue(event()).await.unwrap();
        assert!(first.await.is_err(), "nothing is acknowledged while the broker is down");
        cluster.broker_up(BROKER).unwrap();
        let behind = behind.await;
        assert!(behind.is_err(), "the record behind must not be sent once the broker is back: {behind:?}");

        let after = producer.send(event()).await.expect("a fresh producer publishes once the broker is back");
        assert_eq!(after.offset, 1, "nothing was written between the first record and this one");
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
