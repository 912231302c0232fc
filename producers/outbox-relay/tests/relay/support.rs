//! Set-up shared by the relay's tests: a broker with the catalog's topics and our schema
//! registry (`Stack`), an upstream PostgreSQL database of the test's own with the outbox table,
//! relays run in-process, and a reader for whole topics.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventline_common::config::Secret;
use eventline_common::envelope::Envelope;
use eventline_common::kafka::producer::{EventProducer, ProducerSettings};
use eventline_common::kafka::KafkaSettings;
use eventline_common::publish::Publisher;
use eventline_e2e::Stack;
use eventline_outbox_relay::{OutboxRelay, OutboxRelaySettings};
use eventline_testkit::{eventually, unique, PgDatabase};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use sqlx::postgres::PgPool;
use sqlx::Row as _;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const OUTBOX_SQL: &str = include_str!("../../sql/outbox.sql");

/// A broker, a registry and an upstream database with the outbox table (from `sql/outbox.sql`).
pub struct Harness {
    pub stack: Stack,
    pub db: PgDatabase,
    pub pool: PgPool,
}

impl Harness {
    pub async fn start() -> Self {
        let (stack, db) = tokio::join!(Stack::start(), PgDatabase::create());
        let pool = PgPool::connect(db.url()).await.unwrap_or_else(|e| panic!("upstream database: {e}"));
        Self { stack, db, pool }
    }

    /// The harness with the outbox table applied from the shipped SQL file, as an upstream would.
    pub async fn with_outbox() -> Self {
        let harness = Self::start().await;
        sqlx::raw_sql(OUTBOX_SQL).execute(&harness.pool).await.unwrap_or_else(|e| panic!("sql/outbox.sql: {e}"));
        harness
    }

    pub fn settings(&self) -> OutboxRelaySettings {
        OutboxRelaySettings {
            database_url: Secret::new(self.db.url()),
            poll_interval: Duration::from_millis(200),
            listen: "127.0.0.1:0".into(),
            ..OutboxRelaySettings::default()
        }
    }

    pub fn kafka(&self) -> KafkaSettings {
        self.stack.broker.kafka_settings()
    }

    pub fn publisher(&self) -> Publisher {
        let producer =
            EventProducer::new(&self.kafka(), &ProducerSettings::default()).unwrap_or_else(|e| panic!("producer: {e}"));
        Publisher::new(producer, Arc::new(self.stack.contracts.clone()))
    }

    pub async fn build(&self, settings: OutboxRelaySettings) -> Built {
        let metrics = prometheus::Registry::new();
        let relay = OutboxRelay::build(settings, self.publisher(), metrics.clone())
            .await
            .unwrap_or_else(|e| panic!("relay: {e:#}"));
        Built { relay, metrics }
    }

    pub async fn start_relay(&self, settings: OutboxRelaySettings) -> RunningRelay {
        self.build(settings).await.run()
    }

    /// Inserts `count` `OrderShipped` rows for `aggregates` orders, interleaved (row g belongs to
    /// order `o-<g % aggregates>` and carries `seq-<g>` as its carrier), in one statement.
    pub async fn insert_shipments(&self, table: &str, count: i64, aggregates: i64) {
        sqlx::query(&format!(
            "INSERT INTO {table} (event_type, aggregate_id, payload)
             SELECT 'OrderShipped', 'o-' || (g % $2),
                    jsonb_build_object('order_id', 'o-' || (g % $2), 'carrier', 'seq-' || g,
                                       'shipped_at', 1795428000000 + g)
             FROM generate_series(1, $1) AS g ORDER BY g"
        ))
        .bind(count)
        .bind(aggregates)
        .execute(&self.pool)
        .await
        .unwrap_or_else(|e| panic!("insert: {e}"));
    }

    /// `(published, rejected, total)` rows of `table`.
    pub async fn counts(&self, table: &str) -> (i64, i64, i64) {
        let row = sqlx::query(&format!("SELECT count(published_at), count(rejected_at), count(*) FROM {table}"))
            .fetch_one(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("count: {e}"));
        (row.get(0), row.get(1), row.get(2))
    }

    /// Waits until every row of `table` is published or rejected.
    pub async fn settled(&self, table: &str, deadline: Duration) {
        eventually(&format!("every row of {table} published or rejected"), deadline, || async {
            let (published, rejected, total) = self.counts(table).await;
            (published + rejected == total).then_some(())
        })
        .await;
    }

    /// The rows of `table` in id order.
    pub async fn rows(&self, table: &str) -> Vec<StoredRow> {
        sqlx::query(&format!(
            "SELECT id, event_id::text AS event_id, event_type, aggregate_id, payload::text AS payload, source,
                    floor(extract(epoch FROM occurred_at) * 1000)::bigint AS occurred_ms,
                    published_at IS NOT NULL AS published, rejected_at IS NOT NULL AS rejected, last_error,
                    kafka_topic, kafka_partition, kafka_offset
             FROM {table} ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await
        .unwrap_or_else(|e| panic!("rows: {e}"))
        .iter()
        .map(|r| StoredRow {
            event_id: r.get("event_id"),
            event_type: r.get("event_type"),
            aggregate_id: r.get("aggregate_id"),
            payload: serde_json::from_str(r.get("payload")).unwrap_or_else(|e| panic!("payload: {e}")),
            source: r.get("source"),
            occurred_ms: r.get("occurred_ms"),
            published: r.get("published"),
            rejected: r.get("rejected"),
            last_error: r.get("last_error"),
            kafka_topic: r.get("kafka_topic"),
            kafka_partition: r.get("kafka_partition"),
            kafka_offset: r.get("kafka_offset"),
        })
        .collect()
    }
}

#[derive(Debug, Clone)]
pub struct StoredRow {
    pub event_id: String,
    pub event_type: String,
    pub aggregate_id: String,
    pub payload: serde_json::Value,
    pub source: Option<String>,
    pub occurred_ms: i64,
    pub published: bool,
    pub rejected: bool,
    pub last_error: Option<String>,
    pub kafka_topic: Option<String>,
    pub kafka_partition: Option<i32>,
    pub kafka_offset: Option<i64>,
}

/// A relay built and not yet running, with its own metrics registry.
pub struct Built {
    pub relay: OutboxRelay,
    pub metrics: prometheus::Registry,
}

impl Built {
    pub fn run(self) -> RunningRelay {
        let token = CancellationToken::new();
        let handle = tokio::spawn(self.relay.run(token.clone()));
        RunningRelay { token, handle, metrics: self.metrics }
    }
}

pub struct RunningRelay {
    token: CancellationToken,
    handle: JoinHandle<anyhow::Result<()>>,
    pub metrics: prometheus::Registry,
}

impl RunningRelay {
    /// Cancels the relay and waits for it to finish its batch in flight; its metrics stay readable.
    pub async fn stop(self) -> prometheus::Registry {
        self.token.cancel();
        let stopped = tokio::time::timeout(Duration::from_secs(30), self.handle).await;
        match stopped {
            Ok(Ok(Ok(()))) => self.metrics,
            other => panic!("the relay did not stop cleanly: {other:?}"),
        }
    }

    /// The value of a counter or gauge (summed over the series whose labels include `labels`).
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric(&self.metrics, name, labels)
    }
}

pub fn metric(registry: &prometheus::Registry, name: &str, labels: &[(&str, &str)]) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|family| family.name() == name)
        .flat_map(|family| family.get_metric().iter())
        .filter(|m| labels.iter().all(|(k, v)| m.get_label().iter().any(|l| l.name() == *k && l.value() == *v)))
        .map(|m| m.get_counter().get_value() + m.get_gauge().get_value())
        .sum()
}

/// One message read back from a topic.
#[derive(Debug, Clone)]
pub struct Received {
    pub partition: i32,
    pub offset: i64,
    pub key: String,
    pub envelope: Envelope,
    pub value: Vec<u8>,
}

/// Every message of `topic`, from the beginning to the high watermark, per partition in offset order.
pub async fn read_topic(kafka: &KafkaSettings, topic: &str) -> Vec<Received> {
    let kafka = kafka.clone();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || read_topic_blocking(&kafka, &topic))
        .await
        .unwrap_or_else(|e| panic!("reader: {e}"))
}

fn read_topic_blocking(kafka: &KafkaSettings, topic: &str) -> Vec<Received> {
    let timeout = Duration::from_secs(10);
    let consumer: BaseConsumer = kafka
        .client_config()
        .set("group.id", unique("relay-test-reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap_or_else(|e| panic!("consumer: {e}"));
    let metadata = consumer.fetch_metadata(Some(topic), timeout).unwrap_or_else(|e| panic!("metadata: {e}"));
    let partitions: Vec<i32> = metadata.topics()[0].partitions().iter().map(|p| p.id()).collect();
    let mut assignment = TopicPartitionList::new();
    let mut ends: HashMap<i32, i64> = HashMap::new();
    for &partition in &partitions {
        let (low, high) =
            consumer.fetch_watermarks(topic, partition, timeout).unwrap_or_else(|e| panic!("watermarks: {e}"));
        if high > low {
            ends.insert(partition, high);
            assignment.add_partition_offset(topic, partition, Offset::Offset(low)).unwrap_or_else(|e| panic!("{e}"));
        }
    }
    consumer.assign(&assignment).unwrap_or_else(|e| panic!("assign: {e}"));
    let mut received = Vec::new();
    let started = Instant::now();
    while !ends.is_empty() {
        assert!(started.elapsed() < Duration::from_secs(60), "reading {topic} timed out; still to read: {ends:?}");
        let Some(message) = consumer.poll(Duration::from_millis(200)) else { continue };
        let message = message.unwrap_or_else(|e| panic!("consume: {e}"));
        let envelope = Envelope::from_headers(message.headers().unwrap_or_else(|| panic!("no headers")))
            .unwrap_or_else(|e| panic!("envelope: {e}"));
        if ends.get(&message.partition()).is_some_and(|end| message.offset() + 1 >= *end) {
            ends.remove(&message.partition());
        }
        received.push(Received {
            partition: message.partition(),
            offset: message.offset(),
            key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
            envelope,
            value: message.payload().unwrap_or_default().to_vec(),
        });
    }
    received.sort_by_key(|r| (r.partition, r.offset));
    received
}

/// Per key, the event ids in the order they appear on the topic (first occurrence only).
pub fn ids_per_key(messages: &[Received]) -> HashMap<String, Vec<String>> {
    let mut seen = std::collections::HashSet::new();
    let mut per_key: HashMap<String, Vec<String>> = HashMap::new();
    for m in messages {
        let id = m.envelope.id.to_string();
        if seen.insert(id.clone()) {
            per_key.entry(m.key.clone()).or_default().push(id);
        }
    }
    per_key
}

/// Per aggregate, the event ids of `rows` in id order.
pub fn ids_per_aggregate<'a>(rows: impl IntoIterator<Item = &'a StoredRow>) -> HashMap<String, Vec<String>> {
    let mut per_aggregate: HashMap<String, Vec<String>> = HashMap::new();
    for row in rows {
        per_aggregate.entry(row.aggregate_id.clone()).or_default().push(row.event_id.clone());
    }
    per_aggregate
}
