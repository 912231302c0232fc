//! Shared set-up: a Apache Kafka broker, our schema registry with the catalog registered, producers of
//! good and bad records with explicit partitions, a reader for the dead-letter topic.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use eventline_common::catalog::Catalog;
use eventline_common::contracts::Contracts;
use eventline_common::db::{Database, DatabaseSettings};
use eventline_common::envelope::{Envelope, TraceParent};
use eventline_common::events::{samples, OrderCancelled};
use eventline_common::kafka::consumer::{
    ConsumerError, ConsumerMetrics, ConsumerRuntime, ConsumerSettings, Handler, RetryPolicy,
};
use eventline_common::kafka::KafkaSettings;
use eventline_common::registry_client::{RegistryClient, SchemaRegistrySettings};
use eventline_registry::{RegistryApp, RegistrySettings};
use eventline_testkit::{unique, Broker, SqliteDatabase};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const WAIT: Duration = Duration::from_secs(30);
/// `ce_type` of an `OrderPlaced`.
pub const ORDER_PLACED: &str = "com.eventline.commerce.OrderPlaced";

/// A broker and a registry holding the catalog's schemas, for one test.
pub struct Env {
    pub broker: Broker,
    pub registry: RegistryClient,
    pub contracts: Contracts,
    producer: FutureProducer,
    registry_token: CancellationToken,
    _registry_db: SqliteDatabase,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.registry_token.cancel();
    }
}

impl Env {
    pub async fn start() -> Self {
        let _already = tracing_subscriber::fmt()
            .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "info,librdkafka=warn".into()))
            .with_test_writer()
            .try_init();
        let broker = Broker::shared();
        let registry_db = SqliteDatabase::create();
        let settings = DatabaseSettings { url: registry_db.url().to_owned(), ..DatabaseSettings::default() };
        let database = Database::connect(&settings).await.unwrap();
        let app = RegistryApp::build(RegistrySettings::default(), database, prometheus::Registry::new()).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let registry_token = CancellationToken::new();
        tokio::spawn(app.run(listener, registry_token.clone()));
        let registry =
            RegistryClient::new(&SchemaRegistrySettings { url, ..SchemaRegistrySettings::default() }).unwrap();
        let contracts = Contracts::register(Catalog::embedded().unwrap(), &registry).await.unwrap();
        let producer = broker.kafka_settings().client_config().set("enable.idempotence", "true").create().unwrap();
        Self { broker, registry, contracts, producer, registry_token, _registry_db: registry_db }
    }

    pub fn kafka(&self) -> KafkaSettings {
        self.broker.kafka_settings()
    }

    /// A new topic with `partitions` partitions.
    pub async fn topic(&self, partitions: i32) -> String {
        let name = unique("orders");
        self.broker.create_topics(&[(&name, partitions)]).await;
        name
    }

    pub fn runtime<H: Handler>(
        &self,
        settings: ConsumerSettings,
        handler: H,
        metrics: &ConsumerMetrics,
    ) -> ConsumerRuntime<H> {
        ConsumerRuntime::new(
            settings,
            self.kafka(),
            self.registry.clone(),
            Catalog::embedded().unwrap(),
            handler,
            metrics.clone(),
        )
    }

    /// Publishes an `OrderPlaced` for `order_id` to `partition`; returns its offset.
    pub async fn order(&self, topic: &str, partition: i32, order_id: &str) -> i64 {
        self.order_with(topic, partition, order_id, None, None).await
    }

    /// Like [`order`](Self::order), with a CloudEvents subject and a record timestamp.
    pub async fn order_with(
        &self,
        topic: &str,
        partition: i32,
        order_id: &str,
        subject: Option<&str>,
        timestamp_ms: Option<i64>,
    ) -> i64 {
        let (_, value) = self.contracts.encode(&samples::order_placed(order_id)).unwrap();
        let mut envelope = envelope(ORDER_PLACED);
        envelope.subject = subject.map(str::to_owned);
        self.raw(topic, partition, Some(order_id), &value, Some(envelope.to_headers()), timestamp_ms).await
    }

    /// Publishes an `OrderCancelled` (a type the tests' consumers usually do not ask for).
    pub async fn cancellation(&self, topic: &str, partition: i32, order_id: &str) -> i64 {
        let cancelled = OrderCancelled {
            order_id: order_id.to_owned(),
            reason: eventline_common::events::CancellationReason::CustomerRequest,
            cancelled_at: Utc::now(),
        };
        let (_, value) = self.contracts.encode(&cancelled).unwrap();
        let headers = envelope("com.eventline.commerce.OrderCancelled").to_headers();
        self.raw(topic, partition, Some(order_id), &value, Some(headers), None).await
    }

    /// Publishes any bytes; returns the offset.
    pub async fn raw(
        &self,
        topic: &str,
        partition: i32,
        key: Option<&str>,
        value: &[u8],
        headers: Option<OwnedHeaders>,
        timestamp_ms: Option<i64>,
    ) -> i64 {
        let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(topic).partition(partition).payload(value);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(headers) = headers {
            record = record.headers(headers);
        }
        if let Some(timestamp) = timestamp_ms {
            record = record.timestamp(timestamp);
        }
        let delivered = self.producer.send(record, Duration::from_secs(10)).await.map_err(|(e, _)| e).unwrap();
        delivered.offset
    }
}

pub fn envelope(event_type: &str) -> Envelope {
    Envelope {
        id: uuid::Uuid::new_v4(),
        source: "/tests/consumer".into(),
        event_type: event_type.to_owned(),
        time: Utc::now(),
        subject: None,
        traceparent: Some(TraceParent::new_root()),
        correlation_id: None,
    }
}

/// Settings for tests: a unique group, quick retries and reports.
pub fn settings(topics: &[&str]) -> ConsumerSettings {
    let mut settings = ConsumerSettings::new(unique("group"), topics.iter().copied());
    settings.event_types = vec!["OrderPlaced".into()];
    settings.batch_linger = Duration::from_millis(20);
    settings.commit_interval = Duration::from_millis(200);
    settings.lag_report_interval = Duration::from_millis(200);
    settings.retry = RetryPolicy {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        jitter: 0.2,
    };
    settings
}

/// A consumer running in a task.
pub struct Running {
    pub token: CancellationToken,
    task: JoinHandle<Result<(), ConsumerError>>,
}

impl Running {
    pub fn start<H: Handler>(runtime: ConsumerRuntime<H>) -> Self {
        let token = CancellationToken::new();
        let task = tokio::spawn(runtime.run(token.clone()));
        Self { token, task }
    }

    /// Cancels and waits for the drain (at most `deadline`), failing on an error.
    pub async fn stop_within(self, deadline: Duration) {
        self.token.cancel();
        match tokio::time::timeout(deadline, self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => panic!("consumer failed: {error:#}"),
            Ok(Err(join)) => panic!("consumer task failed: {join}"),
            Err(_) => panic!("consumer did not stop within {deadline:?}"),
        }
    }

    pub async fn stop(self) {
        self.stop_within(WAIT).await;
    }
}

/// Every record of a one-partition topic from the beginning, once there are `count`.
pub async fn read_all(kafka: &KafkaSettings, topic: &str, count: usize) -> Vec<OwnedMessage> {
    let consumer: StreamConsumer =
        kafka.client_config().set("group.id", unique("reader")).set("enable.auto.commit", "false").create().unwrap();
    let mut assignment = rdkafka::TopicPartitionList::new();
    assignment.add_partition_offset(topic, 0, rdkafka::Offset::Beginning).unwrap();
    consumer.assign(&assignment).unwrap();
    let mut messages = Vec::new();
    let until = tokio::time::Instant::now() + WAIT;
    while messages.len() < count {
        match tokio::time::timeout_at(until, consumer.recv()).await {
            Ok(Ok(message)) => messages.push(message.detach()),
            Ok(Err(error)) => panic!("reading {topic}: {error}"),
            Err(_) => panic!("read {} of {count} records from {topic}", messages.len()),
        }
    }
    messages
}

/// The high watermark of a partition.
pub async fn end_offset(kafka: &KafkaSettings, topic: &str, partition: i32) -> i64 {
    let config = kafka.client_config();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: rdkafka::consumer::BaseConsumer = config.create().unwrap();
        consumer.fetch_watermarks(&topic, partition, Duration::from_secs(10)).unwrap().1
    })
    .await
    .unwrap()
}

/// The sum of a counter's (or gauge's) series with these labels in `registry`.
pub fn metric(registry: &prometheus::Registry, name: &str, labels: &[(&str, &str)]) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|family| family.name() == name)
        .flat_map(|family| family.get_metric().to_vec())
        .filter(|metric| {
            labels.iter().all(|(key, value)| metric.get_label().iter().any(|l| l.name() == *key && l.value() == *value))
        })
        .map(|metric| metric.get_counter().get_value() + metric.get_gauge().get_value())
        .sum()
}

/// A value shared between a test and its handler.
pub type Shared<T> = Arc<std::sync::Mutex<T>>;

pub fn shared<T: Default>() -> Shared<T> {
    Arc::default()
}

pub fn header(message: &OwnedMessage, name: &str) -> Option<String> {
    use rdkafka::message::Headers as _;
    message
        .headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// Sets `group`'s committed offsets from outside the group (what an operator's reset does).
pub async fn commit_offsets(kafka: &KafkaSettings, group: &str, topic: &str, offsets: &[(i32, i64)]) {
    let config = {
        let mut config = kafka.client_config();
        config.set("group.id", group).set("enable.auto.commit", "false");
        config
    };
    let mut tpl = rdkafka::TopicPartitionList::new();
    for (partition, offset) in offsets {
        tpl.add_partition_offset(topic, *partition, rdkafka::Offset::Offset(*offset)).unwrap();
    }
    tokio::task::spawn_blocking(move || {
        let consumer: rdkafka::consumer::BaseConsumer = config.create().unwrap();
        consumer.commit(&tpl, rdkafka::consumer::CommitMode::Sync).unwrap();
    })
    .await
    .unwrap();
}
