use std::sync::Arc;
use std::time::Duration;

use eventline_common::avro;
use eventline_common::catalog::Catalog;
use eventline_common::contracts::Contracts;
use eventline_common::db::{Database, DatabaseSettings};
use eventline_common::events::{samples, OrderPlaced};
use eventline_common::kafka::producer::EventProducer;
use eventline_common::publish::Publisher;
use eventline_common::registry_client::{RegistryClient, SchemaRegistrySettings};
use eventline_http_ingest::{IngestApp, IngestSettings};
use eventline_registry::{RegistryApp, RegistrySettings};
use eventline_testkit::{Broker, PgDatabase, SqliteDatabase};
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

pub const WAIT: Duration = Duration::from_secs(30);

/// Runs each named scenario `async fn name(db: Db)` once per database backend.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::helpers::Db::Postgres).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::helpers::Db::Sqlite).await
            }
        }
    )*};
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Postgres,
    Sqlite,
}

pub enum DbGuard {
    Postgres(#[allow(dead_code)] PgDatabase),
    Sqlite(#[allow(dead_code)] SqliteDatabase),
}

impl DbGuard {
    pub async fn create(db: Db) -> (Self, String) {
        match db {
            Db::Postgres => {
                let pg = PgDatabase::create().await;
                let url = pg.url().to_owned();
                (DbGuard::Postgres(pg), url)
            }
            Db::Sqlite => {
                let lite = SqliteDatabase::create();
                let url = lite.url().to_owned();
                (DbGuard::Sqlite(lite), url)
            }
        }
    }
}

/// Our schema registry on a free port over its own SQLite file.
pub struct TestRegistry {
    pub url: String,
    pub client: RegistryClient,
    stop: CancellationToken,
    _db: SqliteDatabase,
}

impl TestRegistry {
    pub async fn start() -> Self {
        let file = SqliteDatabase::create();
        let settings = DatabaseSettings { url: file.url().to_owned(), ..DatabaseSettings::default() };
        let database = Database::connect(&settings).await.expect("registry database");
        let app = RegistryApp::build(RegistrySettings::default(), database, prometheus::Registry::new())
            .await
            .expect("registry");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let stop = CancellationToken::new();
        tokio::spawn(app.run(listener, stop.clone()));
        let client =
            RegistryClient::new(&SchemaRegistrySettings { url: url.clone(), ..SchemaRegistrySettings::default() })
                .expect("registry client");
        Self { url, client, stop, _db: file }
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The ingest service on a free port, with its own broker (the catalog's topics), schema
/// registry and database; stopped when dropped.
pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub broker: Broker,
    pub registry: TestRegistry,
    pub contracts: Arc<Contracts>,
    stop: CancellationToken,
    _db: DbGuard,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub async fn spawn_app(db: Db) -> TestApp {
    spawn_app_with(db, |_| {}).await
}

pub async fn spawn_app_with(db: Db, configure: impl FnOnce(&mut IngestSettings)) -> TestApp {
    spawn_app_on(Broker::start(), db, configure).await
}

/// [`spawn_app_with`] on the broker `broker` starts (e.g. [`Broker::start_secure`]): the
/// service and the test's own clients connect with its [`Broker::kafka_settings`].
pub async fn spawn_app_on(
    broker: impl std::future::Future<Output = Broker>,
    db: Db,
    configure: impl FnOnce(&mut IngestSettings),
) -> TestApp {
    let (broker, registry, (guard, url)) = tokio::join!(broker, TestRegistry::start(), DbGuard::create(db));
    let catalog = Catalog::embedded().expect("catalog");
    let topics: Vec<(&str, i32)> = catalog.topics().iter().map(|t| (t.name.as_str(), t.partitions)).collect();
    broker.create_topics(&topics).await;
    let contracts = Arc::new(Contracts::register(catalog, &registry.client).await.expect("register the catalog"));
    let database = Database::connect(&DatabaseSettings { url, max_connections: 5, acquire_timeout: WAIT })
        .await
        .expect("connect to the test database");

    let mut settings = IngestSettings::default();
    configure(&mut settings);
    let kafka = broker.kafka_settings();
    let producer = EventProducer::new(&kafka, &settings.producer_settings()).expect("producer");
    let publisher = Publisher::new(producer, contracts.clone());
    let app =
        IngestApp::build(settings, &kafka, publisher, database, registry.client.clone(), prometheus::Registry::new())
            .await
            .expect("build the ingest service");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    let base = format!("http://{}", listener.local_addr().expect("local addr"));
    let stop = CancellationToken::new();
    tokio::spawn(app.run(listener, stop.clone()));
    TestApp { base, http: reqwest::Client::new(), broker, registry, contracts, stop, _db: guard }
}

/// An answer: status, headers, raw text and the JSON (or `Null`).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a problem+json answer with `status` and the problem `slug`; returns `detail`.
    pub fn assert_problem(&self, status: u16, slug: &str) -> &str {
        assert_eq!(self.status, status, "{self:#?}");
        assert_eq!(self.header("content-type"), Some("application/problem+json"), "{self:#?}");
        assert_eq!(self.body["type"], format!("urn:eventline:problem:{slug}"), "{self:#?}");
        assert_eq!(self.body["status"], status, "{self:#?}");
        assert!(self.body["title"].is_string(), "{self:#?}");
        let detail = self.body["detail"].as_str().unwrap_or_else(|| panic!("no detail in {self:#?}"));
        assert!(!detail.is_empty(), "{self:#?}");
        detail
    }
}

pub async fn send(builder: reqwest::RequestBuilder) -> Reply {
    let response = builder.send().await.expect("the ingest service answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("a readable body");
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply { status, headers, text, body }
}

impl TestApp {
    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(format!("{}{path}", self.base))
    }

    pub async fn get(&self, path: &str) -> Reply {
        send(self.http.get(format!("{}{path}", self.base))).await
    }

    pub async fn publish(&self, event: &Value) -> Reply {
        send(self.post("/v1/events").json(event)).await
    }

    pub async fn publish_batch(&self, events: &[Value]) -> Reply {
        send(self.post("/v1/events:batch").json(&events)).await
    }

    /// How many messages the topic holds (the sum of its partitions' high watermarks).
    pub async fn messages(&self, topic: &str) -> i64 {
        let config = self.broker.kafka_settings().client_config();
        let partitions = self.contracts.catalog().topic(topic).map_or(1, |t| t.partitions);
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = config.create().expect("consumer");
            (0..partitions)
                .map(|p| consumer.fetch_watermarks(&topic, p, Duration::from_secs(10)).expect("watermarks").1)
                .sum()
        })
        .await
        .expect("watermark task")
    }

    /// Messages on every topic of the catalog.
    pub async fn all_messages(&self) -> i64 {
        let mut total = 0;
        for topic in self.contracts.catalog().topics() {
            total += self.messages(&topic.name).await;
        }
        total
    }

    /// Reads `count` messages of `topic` from the beginning of every partition.
    pub async fn consume(&self, topic: &str, count: usize) -> Vec<OwnedMessage> {
        let partitions = self.contracts.catalog().topic(topic).map_or(1, |t| t.partitions);
        let consumer = self.consumer();
        let mut assignment = TopicPartitionList::new();
        for partition in 0..partitions {
            assignment.add_partition_offset(topic, partition, Offset::Beginning).expect("assignment");
        }
        consumer.assign(&assignment).expect("assign");
        let mut messages = Vec::new();
        while messages.len() < count {
            let message = tokio::time::timeout(WAIT, consumer.recv())
                .await
                .unwrap_or_else(|_| panic!("only {} of {count} messages arrived on {topic}", messages.len()))
                .expect("consume");
            messages.push(message.detach());
        }
        messages
    }

    /// The message at an answered position.
    pub async fn message_at(&self, result: &Value) -> OwnedMessage {
        let consumer = self.consumer();
        let mut assignment = TopicPartitionList::new();
        let topic = result["topic"].as_str().expect("topic");
        let partition = i32::try_from(result["partition"].as_i64().expect("partition")).expect("partition fits");
        let offset = result["offset"].as_i64().expect("offset");
        assignment.add_partition_offset(topic, partition, Offset::Offset(offset)).expect("assignment");
        consumer.assign(&assignment).expect("assign");
        let message = tokio::time::timeout(WAIT, consumer.recv()).await.expect("a message in time").expect("consume");
        assert_eq!(message.offset(), offset);
        message.detach()
    }

    fn consumer(&self) -> StreamConsumer {
        self.broker
            .kafka_settings()
            .client_config()
            .set("group.id", eventline_testkit::unique("ingest-test"))
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer")
    }

    /// The order in a message's value.
    pub async fn decode_order(&self, message: &OwnedMessage) -> OrderPlaced {
        let framed = avro::unframe(message.payload().expect("a value")).expect("Confluent framing");
        let writer = self.registry.client.schema_by_id(framed.schema_id).await.expect("schema by id");
        avro::decode(framed.body, &writer, None).expect("decodes")
    }
}

/// An `OrderPlaced` event as an upstream system sends it, and the order in it.
pub fn order_event(order_id: &str) -> (Value, OrderPlaced) {
    let order = samples::order_placed(order_id);
    (json!({"type": "OrderPlaced", "source": "/tests/checkout", "data": order}), order)
}

/// A fresh order id.
pub fn order_id() -> String {
    eventline_testkit::unique("order")
}

/// The value of a message header.
pub fn header(message: &OwnedMessage, name: &str) -> Option<String> {
    use rdkafka::message::Headers as _;
    let headers = message.headers()?;
    headers.iter().find(|h| h.key == name).and_then(|h| h.value).map(|v| String::from_utf8_lossy(v).into_owned())
}
