//! Kafka over TLS and SASL, against a real Apache Kafka broker with a SASL_SSL listener (the
//! testkit's, with certificates made by the test): with the right user, password and CA the
//! event producer publishes and the consumer runtime reads back, over SCRAM-SHA-256,
//! SCRAM-SHA-512 and PLAIN; with a wrong password, an untrusted CA or no broker, the start-up
//! connection check fails in seconds and says which broker and why.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use eventline_common::catalog::Catalog;
use eventline_common::contracts::Contracts;
use eventline_common::db::{Database, DatabaseSettings};
use eventline_common::envelope::{Envelope, TraceParent};
use eventline_common::events::{samples, OrderPlaced};
use eventline_common::kafka::admin::{ensure_topics, TopicRequest};
use eventline_common::kafka::connection::{check_connection, ConnectionError, CONNECT_TIMEOUT};
use eventline_common::kafka::consumer::{
    Batch, ConsumerMetrics, ConsumerRuntime, ConsumerSettings, Handler, HandlerError,
};
use eventline_common::kafka::producer::{EventProducer, OutgoingEvent, ProducerSettings};
use eventline_common::kafka::KafkaSettings;
use eventline_common::registry_client::{RegistryClient, SchemaRegistrySettings};
use eventline_registry::{RegistryApp, RegistrySettings};
use eventline_testkit::secure::SaslMechanism;
use eventline_testkit::{eventually, unique, Broker, SqliteDatabase};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);
/// How soon a check must fail on bad credentials or an untrusted certificate: at once, not at
/// [`CONNECT_TIMEOUT`].
const FAILS_WITHIN: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_sha_256_publishes_and_consumes_over_sasl_ssl() {
    round_trip(SaslMechanism::ScramSha256).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_sha_512_publishes_and_consumes_over_sasl_ssl() {
    round_trip(SaslMechanism::ScramSha512).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_publishes_and_consumes_over_sasl_ssl() {
    round_trip(SaslMechanism::Plain).await;
}

/// The check passes; a topic is created, an `OrderPlaced` published by the event producer and
/// handed to a consumer runtime's handler, every client on the SASL_SSL listener.
async fn round_trip(mechanism: SaslMechanism) {
    let broker = Broker::shared_secure();
    let kafka = broker.secure().unwrap().kafka_settings(mechanism);
    check_connection(&kafka, CONNECT_TIMEOUT).await.unwrap_or_else(|e| panic!("{}: {e}", mechanism.as_str()));
    let registry = TestRegistry::start().await;
    let contracts = Contracts::register(Catalog::embedded().unwrap(), &registry.client).await.unwrap();
    let topic = unique("secure-orders");
    ensure_topics(&kafka, &[TopicRequest { name: topic.clone(), partitions: 2, replication: 1 }]).await.unwrap();

    let order_id = unique("order");
    let (_, value) = contracts.encode(&samples::order_placed(&order_id)).unwrap();
    let envelope = Envelope {
        id: uuid::Uuid::new_v4(),
        source: "/tests/secure".into(),
        event_type: "com.eventline.commerce.OrderPlaced".into(),
        time: Utc::now(),
        subject: None,
        traceparent: Some(TraceParent::new_root()),
        correlation_id: None,
    };
    let producer = EventProducer::new(&kafka, &ProducerSettings::default()).unwrap();
    let position = producer
        .send(OutgoingEvent { topic: &topic, key: &order_id, value: &value, envelope: &envelope })
        .await
        .unwrap_or_else(|e| panic!("{}: the broker did not acknowledge: {e}", mechanism.as_str()));
    assert_eq!(position.topic, topic);

    let mut settings = ConsumerSettings::new(unique("secure-group"), [topic.as_str()]);
    settings.event_types = vec!["OrderPlaced".into()];
    let seen = Arc::new(Mutex::new(Vec::new()));
    let handler = Recorder { seen: seen.clone() };
    let runtime = ConsumerRuntime::new(
        settings,
        kafka.clone(),
        registry.client.clone(),
        Catalog::embedded().unwrap(),
        handler,
        ConsumerMetrics::registered_in(&prometheus::Registry::new()).unwrap(),
    );
    let token = CancellationToken::new();
    let consumer = tokio::spawn(runtime.run(token.clone()));
    let handled = eventually("the consumer runtime to handle the order", WAIT, || async {
        let seen = seen.lock().unwrap().clone();
        (!seen.is_empty()).then_some(seen)
    })
    .await;
    assert_eq!(handled, vec![order_id], "{}", mechanism.as_str());
    token.cancel();
    tokio::time::timeout(WAIT, consumer).await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn a_wrong_password_fails_the_check_at_once_naming_the_broker_and_authentication() {
    let broker = Broker::shared_secure();
    let secure = broker.secure().unwrap();
    for mechanism in SaslMechanism::ALL {
        let mut kafka = secure.kafka_settings(mechanism);
        kafka.properties.insert("sasl.password".into(), "not-the-password".into());
        let (error, took) = failed_check(&kafka).await;
        assert!(matches!(error, ConnectionError::Authentication { .. }), "{}: {error:?}", mechanism.as_str());
        let message = error.to_string();
        assert!(message.contains(&secure.bootstrap_servers()), "names the broker: {message}");
        assert!(message.contains("SASL authentication failed"), "{message}");
        assert!(message.contains(mechanism.as_str()), "names the mechanism: {message}");
        assert!(!message.contains("not-the-password"), "never shows the password: {message}");
        assert!(took < FAILS_WITHIN, "{}: failed after {took:?}", mechanism.as_str());
    }
}

#[tokio::test]
async fn an_unknown_user_fails_the_check_as_authentication() {
    let broker = Broker::shared_secure();
    let mut kafka = broker.secure().unwrap().kafka_settings(SaslMechanism::ScramSha512);
    kafka.properties.insert("sasl.username".into(), "mallory".into());
    let (error, took) = failed_check(&kafka).await;
    assert!(matches!(error, ConnectionError::Authentication { .. }), "{error:?}");
    assert!(took < FAILS_WITHIN, "failed after {took:?}");
}

#[tokio::test]
async fn a_ca_that_did_not_sign_the_broker_certificate_fails_the_check_naming_the_certificate() {
    let broker = Broker::shared_secure();
    let secure = broker.secure().unwrap();
    let mut kafka = secure.kafka_settings(SaslMechanism::ScramSha256);
    kafka.properties.insert("ssl.ca.location".into(), secure.untrusted_ca_path().display().to_string());
    let (error, took) = failed_check(&kafka).await;
    assert!(matches!(error, ConnectionError::Tls { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains(&secure.bootstrap_servers()), "names the broker: {message}");
    assert!(message.contains("SSL handshake failed"), "{message}");
    assert!(message.contains("certificate verify failed"), "{message}");
    assert!(took < FAILS_WITHIN, "failed after {took:?}");
}

#[tokio::test]
async fn a_plaintext_client_on_the_secure_listener_is_not_let_in() {
    let broker = Broker::shared_secure();
    let kafka = KafkaSettings::for_bootstrap(broker.bootstrap_servers());
    let timeout = Duration::from_secs(2);
    let error = check_connection(&kafka, timeout).await.expect_err("a plaintext client must not get metadata");
    assert!(matches!(error, ConnectionError::Unreachable { .. }), "{error:?}");
}

#[tokio::test]
async fn no_broker_at_the_address_fails_the_check_as_unreachable_after_the_timeout() {
    let bootstrap = format!("127.0.0.1:{}", eventline_testkit::free_port());
    let timeout = Duration::from_secs(1);
    let started = Instant::now();
    let error = check_connection(&KafkaSettings::for_bootstrap(&bootstrap), timeout).await.expect_err("no broker");
    let took = started.elapsed();
    assert!(matches!(error, ConnectionError::Unreachable { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains(&bootstrap) && message.contains("broker unreachable"), "{message}");
    assert!(message.contains("Connection refused"), "says why: {message}");
    assert!(took >= timeout && took < timeout + Duration::from_secs(2), "took {took:?}");
}

/// The check's error and how long it took to come.
async fn failed_check(kafka: &KafkaSettings) -> (ConnectionError, Duration) {
    let started = Instant::now();
    let error = check_connection(kafka, CONNECT_TIMEOUT).await.expect_err("the check must fail");
    (error, started.elapsed())
}

struct Recorder {
    seen: Arc<Mutex<Vec<String>>>,
}

impl Handler for Recorder {
    async fn handle(&self, batch: &Batch) -> Result<(), HandlerError> {
        let mut orders = Vec::new();
        for event in batch {
            let order: OrderPlaced = event.event()?;
            orders.push(order.order_id);
        }
        self.seen.lock().unwrap().extend(orders);
        Ok(())
    }
}

/// Our schema registry on a free port over its own SQLite file, stopped when dropped.
struct TestRegistry {
    client: RegistryClient,
    stop: CancellationToken,
    _db: SqliteDatabase,
}

impl TestRegistry {
    async fn start() -> Self {
        let file = SqliteDatabase::create();
        let settings = DatabaseSettings { url: file.url().to_owned(), ..DatabaseSettings::default() };
        let database = Database::connect(&settings).await.unwrap();
        let app = RegistryApp::build(RegistrySettings::default(), database, prometheus::Registry::new()).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        tokio::spawn(app.run(listener, stop.clone()));
        let client = RegistryClient::new(&SchemaRegistrySettings { url, ..SchemaRegistrySettings::default() }).unwrap();
        Self { client, stop, _db: file }
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
