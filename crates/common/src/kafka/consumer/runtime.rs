//! [`ConsumerRuntime`]: builds a consumer from settings and a handler, and runs it until the
//! cancellation token fires.
//!
//! The librdkafka consumer is polled by one thread of its own: it serves rebalances (which may
//! block there while partitions drain or offsets are read from the database), notices failed
//! workers and measures lag. Records never pass through it: each assigned partition has its own
//! queue read by its own task on the async runtime.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use apache_avro::Schema;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::Offset;
use tokio_util::sync::CancellationToken;

use super::config::{ConsumerSettings, KeyOrder, OffsetMode};
use super::context::{commit, KafkaConsumer, RuntimeContext, Shared};
use super::dead_letter::DeadLetterProducer;
use super::decode::Decoder;
use super::handler::Handler;
use super::members::Membership;
use super::metrics::ConsumerMetrics;
use super::offsets::OffsetStore;
use super::parked::ParkedStore;
use super::partition::Engine;
use super::progress::ConsumerProgress;
use super::report;
use super::ConsumerError;
use crate::catalog::Catalog;
use crate::kafka::admin::{ensure_topics, topic_names, TopicRequest};
use crate::kafka::KafkaSettings;
use crate::registry_client::RegistryClient;

/// How long one poll of the consumer's main queue (rebalances, errors) may block.
const POLL: Duration = Duration::from_millis(100);
/// librdkafka's prefetch per partition, in payload bytes (its default, 64 MiB, is meant for one
/// shared queue).
const PREFETCH_KBYTES_PER_PARTITION: u32 = 2 * 1024;
/// ... and in messages: librdkafka fetches until a partition's queue holds this many (its
/// default, 100,000 per partition, let a consumer of 16 partitions hold a 1,000,000-event backlog
/// in memory, ~700 MB at ~400 bytes of overhead per small message, once a broker kept up).
const PREFETCH_MESSAGES_PER_PARTITION: u32 = 5_000;
/// The same broker error is logged at most this often.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(30);

/// A consumer: settings, a handler, and where its offsets live.
pub struct ConsumerRuntime<H> {
    settings: ConsumerSettings,
    kafka: KafkaSettings,
    registry: RegistryClient,
    catalog: Catalog,
    handler: Arc<H>,
    offset_store: Option<OffsetStore>,
    readers: BTreeMap<String, Arc<Schema>>,
    metrics: ConsumerMetrics,
    progress: ConsumerProgress,
}

impl<H: Handler> ConsumerRuntime<H> {
    /// `metrics` come from [`ConsumerMetrics::registered_in`] the registry the service serves.
    pub fn new(
        settings: ConsumerSettings,
        kafka: KafkaSettings,
        registry: RegistryClient,
        catalog: Catalog,
        handler: H,
        metrics: ConsumerMetrics,
    ) -> Self {
        Self {
            kafka,
            registry,
            catalog,
            handler: Arc::new(handler),
            offset_store: None,
            readers: BTreeMap::new(),
            metrics,
            progress: ConsumerProgress::new(settings.outage.ready_after),
            settings,
        }
    }

    /// The store the handler saves offsets to; required by (and only allowed with)
    /// `offset_mode = "transactional"`.
    pub fn with_offset_store(mut self, store: OffsetStore) -> Self {
        self.offset_store = Some(store);
        self
    }

    /// Decodes `event_type` into `schema` instead of the catalog's schema (a consumer built
    /// against an older or newer compatible version).
    pub fn with_reader_schema(mut self, event_type: impl Into<String>, schema: Arc<Schema>) -> Self {
        self.readers.insert(event_type.into(), schema);
        self
    }

    /// Where this consumer is, live (for read-your-writes waits and health checks).
    pub fn progress(&self) -> ConsumerProgress {
        self.progress.clone()
    }

    /// Runs until `token` is cancelled, then finishes in-flight batches, commits, leaves the
    /// group and returns. An error means the consumer could not start or could not go on.
    pub async fn run(self, token: CancellationToken) -> Result<(), ConsumerError> {
        let settings = self.settings;
        settings.validate()?;
        match (settings.offset_mode, &self.offset_store) {
            (OffsetMode::Transactional, None) => return Err(ConsumerError::MissingOffsetStore),
            (OffsetMode::Kafka, Some(_)) => return Err(ConsumerError::UnexpectedOffsetStore),
            _ => {}
        }
        let group: Arc<str> = Arc::from(settings.group_id.as_str());
        let decoder = Decoder::new(self.registry, self.catalog, &settings.event_types, self.readers, group.clone())?;
        let existing = topic_names(&self.kafka).await.map_err(ConsumerError::Topics)?;
        if let Some(missing) = settings.topics.iter().find(|t| !existing.contains(*t)) {
            return Err(ConsumerError::UnknownTopic(missing.clone()));
        }
        let (dead_letter_topic, retry_topic) = (settings.dead_letter_topic(), settings.retry_topic());
        // The group's own topics, one partition each: its dead letters, and its retry topic (where
        // `eventline dlq redrive` sends events back to this group only), read besides `topics`.
        let own_topics = [&dead_letter_topic, &retry_topic].map(|name| TopicRequest {
            name: name.clone(),
            partitions: 1,
            replication: settings.dead_letter_replication,
        });
        ensure_topics(&self.kafka, &own_topics).await.map_err(ConsumerError::Topics)?;
        let dead_letters = DeadLetterProducer::new(&self.kafka, dead_letter_topic, group.to_string())
            .map_err(ConsumerError::Create)?;
        let metrics = self.metrics;
        let config = client_config(&self.kafka, &settings);
        let mut topics = settings.topics.clone();
        topics.push(retry_topic);
        let shared = Arc::new(Shared::new(
            group.clone(),
            settings,
            self.offset_store,
            metrics.for_group(&group),
            self.progress,
            token.child_token(),
        ));
        let parked = match (shared.settings.key_order, &shared.offsets) {
            (KeyOrder::Key, Some(store)) => Some(ParkedStore::new(store.database().clone(), group.clone())),
            _ => None,
        };
        let engine = Arc::new(Engine { shared: shared.clone(), handler: self.handler, decoder, dead_letters, parked });
        let consumer: Arc<KafkaConsumer> = Arc::new(
            config.create_with_context(RuntimeContext::new(shared.clone(), engine)).map_err(ConsumerError::Create)?,
        );
        consumer.context().set_consumer(&consumer);
        let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topic_refs).map_err(ConsumerError::Subscribe)?;
        tracing::info!(%group, topics = ?topics, "consumer started");
        // A heartbeat row while it runs, so offset resets can tell the group is live.
        let membership = Membership::join(shared.offsets.as_ref(), &group).await;

        tokio::spawn(report::run(shared.clone(), self.kafka.clone()));
        let (done_tx, mut done_rx) = tokio::sync::oneshot::channel();
        let driver_shared = shared.clone();
        std::thread::Builder::new()
            .name("el-consumer".to_owned())
            .spawn(move || {
                let _receiver_gone = done_tx.send(drive(consumer, &driver_shared));
            })
            .map_err(ConsumerError::Thread)?;
        let _stop_on_drop = StopOnDrop(shared.clone());
        let outcome = tokio::select! {
            done = &mut done_rx => done.unwrap_or(Err(ConsumerError::ThreadPanicked)),
            () = token.cancelled() => {
                tracing::info!(%group, "consumer draining: finishing in-flight batches");
                shared.stop();
                done_rx.await.unwrap_or(Err(ConsumerError::ThreadPanicked))
            }
        };
        if let Some(membership) = membership {
            membership.leave().await;
        }
        outcome
    }
}

/// Stops the consumer thread when `run` is dropped before it finished (a drain deadline).
struct StopOnDrop(Arc<Shared>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

fn client_config(kafka: &KafkaSettings, settings: &ConsumerSettings) -> ClientConfig {
    let mut config = kafka.client_config();
    // Only used when a stored offset is no longer in the log: never skip what is there.
    config.set("auto.offset.reset", "earliest").set("enable.partition.eof", "false");
    // With a queue per partition the prefetch limit applies per partition: keep memory bounded.
    config
        .set("queued.max.messages.kbytes", PREFETCH_KBYTES_PER_PARTITION.to_string())
        .set("queued.min.messages", PREFETCH_MESSAGES_PER_PARTITION.to_string());
    for (key, value) in &settings.properties {
        config.set(key, value);
    }
    config
        .set("group.id", &settings.group_id)
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("auto.commit.interval.ms", settings.commit_interval.as_millis().to_string());
    config
}

/// The consumer thread: polls for rebalances and errors until stopped, then drains.
fn drive(consumer: Arc<KafkaConsumer>, shared: &Shared) -> Result<(), ConsumerError> {
    let group = shared.group.clone();
    let mut last_error: Option<(String, Instant)> = None;
    let mut outcome = Ok(());
    while !shared.is_stopping() {
        match consumer.poll(POLL) {
            None => {}
            Some(Ok(message)) => {
                let (topic, partition, offset) = (message.topic().to_owned(), message.partition(), message.offset());
                drop(message);
                tracing::error!(%group, %topic, partition, offset, "a record reached the main queue; seeking back so its partition worker gets it");
                if let Err(error) = consumer.seek(&topic, partition, Offset::Offset(offset), Duration::from_secs(5)) {
                    tracing::error!(%group, %error, "seek failed");
                }
            }
            Some(Err(KafkaError::MessageConsumptionFatal(code))) => {
                outcome = Err(ConsumerError::Fatal(KafkaError::MessageConsumptionFatal(code)));
                break;
            }
            Some(Err(error)) => {
                let text = error.to_string();
                let repeated =
                    last_error.as_ref().is_some_and(|(last, at)| *last == text && at.elapsed() < ERROR_LOG_INTERVAL);
                if !repeated {
                    tracing::warn!(%group, error = %text, "consumer error (librdkafka retries)");
                    last_error = Some((text, Instant::now()));
                }
            }
        }
        if let Some((topic, partition)) = consumer.context().failed_worker() {
            outcome = Err(ConsumerError::WorkerFailed { topic, partition });
            break;
        }
    }
    shared.stop();
    consumer.context().stop_workers(None);
    commit(&consumer, &group);
    consumer.unsubscribe();
    // Workers abandoned after the grace period may still hold the consumer for a moment;
    // closing it must happen here, not on the async runtime.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Arc::strong_count(&consumer) > 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(consumer);
    tracing::info!(%group, "consumer stopped");
    outcome
}
