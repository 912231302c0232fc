//! Shared set-up for the end-to-end tests: a broker, a database and the schema registry, each
//! test with its own.

use eventline_common::catalog::Catalog;
use eventline_common::contracts::Contracts;
use std::sync::Arc;

use eventline_common::db::{Database, DatabaseSettings};
use eventline_common::kafka::producer::{EventProducer, ProducerSettings};
use eventline_common::kafka::Position;
use eventline_common::publish::{prepare, Origin, Publisher};
use eventline_common::registry_client::{RegistryClient, SchemaRegistrySettings};
use eventline_registry::{RegistryApp, RegistrySettings};
use eventline_testkit::{Broker, SqliteDatabase};
use tokio_util::sync::CancellationToken;

/// A running schema registry on a free port over its own SQLite database.
pub struct TestRegistry {
    pub url: String,
    pub client: RegistryClient,
    token: CancellationToken,
    _db: SqliteDatabase,
}

impl TestRegistry {
    pub async fn start() -> Self {
        let db_file = SqliteDatabase::create();
        Self::start_on(db_file).await
    }

    async fn start_on(db_file: SqliteDatabase) -> Self {
        let settings = DatabaseSettings { url: db_file.url().to_owned(), ..DatabaseSettings::default() };
        let database = Database::connect(&settings).await.unwrap_or_else(|e| panic!("database: {e}"));
        let app = RegistryApp::build(RegistrySettings::default(), database, prometheus::Registry::new())
            .await
            .unwrap_or_else(|e| panic!("registry: {e:#}"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("bind: {e}"));
        let url = format!("http://{}", listener.local_addr().unwrap_or_else(|e| panic!("addr: {e}")));
        let token = CancellationToken::new();
        tokio::spawn(app.run(listener, token.clone()));
        let client =
            RegistryClient::new(&SchemaRegistrySettings { url: url.clone(), ..SchemaRegistrySettings::default() })
                .unwrap_or_else(|e| panic!("client: {e}"));
        Self { url, client, token, _db: db_file }
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

/// A broker with the catalog's topics under unique names, and the registry with the catalog's
/// schemas registered under those topics' subjects.
pub struct Stack {
    pub broker: Broker,
    pub registry: TestRegistry,
    pub contracts: Contracts,
}

impl Stack {
    pub async fn start() -> Self {
        Self::start_on(Broker::start().await).await
    }

    /// The stack on `broker` (e.g. one with another storage engine).
    pub async fn start_on(broker: Broker) -> Self {
        let registry = TestRegistry::start().await;
        let catalog = Catalog::embedded().unwrap_or_else(|e| panic!("catalog: {e}"));
        let topics: Vec<(&str, i32)> = catalog.topics().iter().map(|t| (t.name.as_str(), t.partitions)).collect();
        broker.create_topics(&topics).await;
        let contracts =
            Contracts::register(catalog, &registry.client).await.unwrap_or_else(|e| panic!("register: {e}"));
        Self { broker, registry, contracts }
    }

    /// Publishes catalog events written as `{"type": …, "data": …}` (what `eventline publish`
    /// reads), in order, through the one publishing path; the position of each.
    pub async fn publish(&self, events: &[serde_json::Value]) -> Vec<Position> {
        let producer = EventProducer::new(&self.broker.kafka_settings(), &ProducerSettings::default())
            .unwrap_or_else(|e| panic!("producer: {e}"));
        let publisher = Publisher::new(producer, Arc::new(self.contracts.clone()));
        let origin = Origin { source: "/tests".into(), traceparent: None, correlation_id: None };
        let mut positions = Vec::with_capacity(events.len());
        for event in events {
            let prepared = prepare(&self.contracts, event, &origin).unwrap_or_else(|e| panic!("{event}: {e:?}"));
            positions.push(publisher.publish(&prepared).await.unwrap_or_else(|e| panic!("publish: {e}")));
        }
        positions
    }
}

/// An `OrderPlaced` of 100 minor units in `currency`, as [`Stack::publish`] takes it.
pub fn order_placed(order_id: &str, currency: &str) -> serde_json::Value {
    serde_json::json!({"type": "OrderPlaced", "data": {
        "order_id": order_id, "customer_id": "c", "currency": currency, "total_minor": 100,
        "lines": [{"sku": "s", "quantity": 1, "unit_price_minor": 100}], "placed_at": "2026-01-01T00:00:00Z"}})
}

/// Reads `count` messages from every partition of `topic` from the beginning (without a group),
/// failing after `deadline`.
pub async fn read_topic(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    count: usize,
    deadline: std::time::Duration,
) -> Vec<rdkafka::message::OwnedMessage> {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::message::Message;
    let consumer: StreamConsumer = eventline_common::kafka::KafkaSettings::for_bootstrap(bootstrap)
        .client_config()
        .set("group.id", eventline_testkit::unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap_or_else(|e| panic!("consumer: {e}"));
    let mut assignment = rdkafka::TopicPartitionList::new();
    for partition in 0..partitions {
        assignment
            .add_partition_offset(topic, partition, rdkafka::Offset::Beginning)
            .unwrap_or_else(|e| panic!("assign: {e}"));
    }
    consumer.assign(&assignment).unwrap_or_else(|e| panic!("assign: {e}"));
    let mut messages = Vec::with_capacity(count);
    let until = tokio::time::Instant::now() + deadline;
    while messages.len() < count {
        match tokio::time::timeout_at(until, consumer.recv()).await {
            Ok(Ok(message)) => messages.push(message.detach()),
            Ok(Err(e)) => panic!("consume {topic}: {e}"),
            Err(_) => panic!("read {} of {count} messages from {topic} before the deadline", messages.len()),
        }
    }
    // Nothing beyond `count`: a short wait for an unexpected extra message.
    if let Ok(Ok(extra)) = tokio::time::timeout(std::time::Duration::from_millis(300), consumer.recv()).await {
        panic!("{topic} holds more than {count} messages; extra at offset {}", extra.offset());
    }
    messages
}
