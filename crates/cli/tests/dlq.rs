//! `eventline dlq list|show|redrive` against a real Apache Kafka broker, the Eventline registry, the
//! projector on SQLite, and the real `eventline` binary.
//!
//! Most tests share one fixture: group `billing` with five dead letters written the way the
//! consumer runtime writes them (offsets 0-4 of `billing.dlq`):
//! 0 `OrderPlaced` order-1 (permanent), 1 `CustomerRegistered` cust-1 (retries_exhausted),
//! 2 `OrderPlaced` order-2 (permanent), 3 garbage bytes without CloudEvents headers (decode),
//! 4 `OrderCancelled` order-1 without its original-topic header.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use eventline_cli::commands::dlq::{
    list, redrive, show, LetterStatus, ListQuery, OffsetRange, RedriveRequest, Selection, ShowQuery, Target,
};
use eventline_common::avro::{self, SchemaId};
use eventline_common::catalog::Catalog;
use eventline_common::contracts::Contracts;
use eventline_common::db::{Database, DatabaseSettings};
use eventline_common::envelope::{Envelope, TraceParent};
use eventline_common::events::{
    samples, CancellationReason, CustomerRegistered, DomainEvent, OrderCancelled, OrderPlaced, OrderShipped,
    PaymentCaptured,
};
use eventline_common::kafka::consumer::dead_letter::header;
use eventline_common::kafka::consumer::{DeadLetterInfo, DeadLetterReason};
use eventline_common::kafka::producer::{EventProducer, OutgoingEvent, ProducerSettings};
use eventline_common::kafka::{KafkaSettings, Position};
use eventline_common::registry_client::{RegistryClient, SchemaRegistrySettings};
use eventline_common::service::{prepare, Platform};
use eventline_e2e::TestRegistry as Registry;
use eventline_projector::domain::{Fact, ReadModel, Recorded};
use eventline_projector::{ProjectorService, ProjectorSettings};
use eventline_testkit::{eventually, Broker, SqliteDatabase};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value as Json;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(60);
const GROUP: &str = "billing";
const DLQ: &str = "billing.dlq";
const RETRY: &str = "billing.retry";
const MARKERS: &str = "billing.dlq.redrives";

/// A registry client with a cache of its own.
fn client(url: &str) -> RegistryClient {
    RegistryClient::new(&SchemaRegistrySettings { url: url.to_owned(), ..SchemaRegistrySettings::default() }).unwrap()
}

/// A broker with the catalog's topics, the registry with the catalog's schemas, a producer.
struct Stack {
    broker: Broker,
    registry: Registry,
    contracts: Arc<Contracts>,
    producer: EventProducer,
}

/// An event as published: where, its envelope and its framed value.
struct Published {
    position: Position,
    envelope: Envelope,
    key: String,
    value: Vec<u8>,
}

impl Stack {
    async fn start() -> Self {
        let broker = Broker::start().await;
        let registry = Registry::start().await;
        let catalog = Catalog::embedded().unwrap();
        let topics: Vec<(&str, i32)> = catalog.topics().iter().map(|t| (t.name.as_str(), t.partitions)).collect();
        broker.create_topics(&topics).await;
        let contracts = Arc::new(Contracts::register(catalog, &registry.client).await.unwrap());
        let producer = EventProducer::new(&broker.kafka_settings(), &ProducerSettings::default()).unwrap();
        Self { broker, registry, contracts, producer }
    }

    fn kafka(&self) -> KafkaSettings {
        self.broker.kafka_settings()
    }

    fn envelope(event_type: &str, id: Uuid) -> Envelope {
        Envelope {
            id,
            source: "/tests/dlq".into(),
            event_type: event_type.to_owned(),
            time: Utc::now(),
            subject: None,
            traceparent: Some(TraceParent::new_root()),
            correlation_id: None,
        }
    }

    /// Publishes `event` with its catalog schema to its catalog topic.
    async fn publish<E: DomainEvent>(&self, event: &E, id: Uuid) -> Published {
        let (registered, value) = self.contracts.encode(event).unwrap();
        let envelope = Self::envelope(&registered.spec.full_name, id);
        self.publish_bytes(&registered.spec.topic, event.key(), value, envelope).await
    }

    async fn publish_bytes(&self, topic: &str, key: &str, value: Vec<u8>, envelope: Envelope) -> Published {
        let position =
            self.producer.send(OutgoingEvent { topic, key, value: &value, envelope: &envelope }).await.unwrap();
        Published { position, envelope, key: key.to_owned(), value }
    }

    async fn eventline(&self, args: &[&str]) -> Output {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_eventline"))
            .args(args)
            .env("EVENTLINE_KAFKA__BOOTSTRAP_SERVERS", self.broker.bootstrap_servers())
            .env("EVENTLINE_SCHEMA_REGISTRY__URL", &self.registry.url)
            .env("RUST_LOG", "warn")
            .kill_on_drop(true)
            .output()
            .await
            .unwrap()
    }

    /// Runs `eventline args…`, expects success, and parses its JSON output.
    async fn eventline_json(&self, args: &[&str]) -> Json {
        let out = self.eventline(args).await;
        assert!(out.status.success(), "eventline {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("eventline {args:?} printed no JSON ({e}): {}", String::from_utf8_lossy(&out.stdout))
        })
    }

    /// The end offset of every partition of every topic (what must not move when nothing is sent).
    async fn ends(&self) -> BTreeMap<(String, i32), i64> {
        let kafka = self.kafka();
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = kafka.client_config().create().unwrap();
            let metadata = consumer.fetch_metadata(None, Duration::from_secs(10)).unwrap();
            let mut ends = BTreeMap::new();
            // Kafka's own topics (`__consumer_offsets`, made at a group's first request) left out.
            for topic in metadata.topics().iter().filter(|t| !t.name().starts_with("__")) {
                for partition in topic.partitions() {
                    let (_, high) =
                        consumer.fetch_watermarks(topic.name(), partition.id(), Duration::from_secs(10)).unwrap();
                    ends.insert((topic.name().to_owned(), partition.id()), high);
                }
            }
            ends
        })
        .await
        .unwrap()
    }

    /// The record at `topic`/`partition`@`offset`.
    async fn record_at(&self, topic: &str, partition: i32, offset: i64) -> OwnedMessage {
        let kafka = self.kafka();
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = kafka.client_config().set("group.id", "dlq-test-reader").create().unwrap();
            let mut assignment = TopicPartitionList::new();
            assignment.add_partition_offset(&topic, partition, Offset::Offset(offset)).unwrap();
            consumer.assign(&assignment).unwrap();
            let deadline = std::time::Instant::now() + WAIT;
            while std::time::Instant::now() < deadline {
                if let Some(message) = consumer.poll(Duration::from_millis(200)) {
                    let message = message.unwrap();
                    if message.offset() == offset {
                        return message.detach();
                    }
                }
            }
            panic!("no record at {topic}/{partition}@{offset}");
        })
        .await
        .unwrap()
    }
}

fn header_value(message: &OwnedMessage, name: &str) -> Option<String> {
    message
        .headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// Writes a dead letter to `topic` the way the runtime does; its offset.
async fn dead_letter(kafka: &KafkaSettings, topic: &str, key: &str, value: &[u8], headers: OwnedHeaders) -> i64 {
    let producer: FutureProducer = kafka.client_config().create().unwrap();
    let record: FutureRecord<'_, str, [u8]> = FutureRecord::to(topic).key(key).payload(value).headers(headers);
    producer.send(record, Duration::from_secs(10)).await.map_err(|(e, _)| e).unwrap().offset
}

fn info(origin: &Position, reason: DeadLetterReason, attempts: u32, error: &str) -> DeadLetterInfo {
    DeadLetterInfo {
        original_topic: origin.topic.clone(),
        original_partition: origin.partition,
        original_offset: origin.offset,
        error: error.to_owned(),
        reason,
        attempts,
        time: Utc::now(),
        group: GROUP.to_owned(),
    }
}

/// The stack with group `billing`'s five dead letters (see the file's doc) and its retry topic.
struct Fixture {
    stack: Stack,
    /// The published events behind letters 0, 1, 2 and 4.
    events: BTreeMap<i64, Published>,
}

async fn fixture() -> Fixture {
    let stack = Stack::start().await;
    stack.broker.create_topics(&[(DLQ, 1), (RETRY, 1)]).await;
    let kafka = stack.kafka();
    let order_1 = stack.publish(&samples::order_placed("order-1"), Uuid::new_v4()).await;
    let registered = CustomerRegistered {
        customer_id: "cust-1".into(),
        email: "ada@example.com".into(),
        name: "Ada".into(),
        registered_at: samples::at(1_795_000_000_000),
    };
    let cust_1 = stack.publish(&registered, Uuid::new_v4()).await;
    let order_2 = stack.publish(&samples::order_placed("order-2"), Uuid::new_v4()).await;
    let cancelled = OrderCancelled {
        order_id: "order-1".into(),
        reason: CancellationReason::CustomerRequest,
        cancelled_at: samples::at(1_795_000_100_000),
    };
    let cancel_1 = stack.publish(&cancelled, Uuid::new_v4()).await;

    let mut events = BTreeMap::new();
    let letters = [
        (order_1, DeadLetterReason::Permanent, 1, "order-1 cannot be applied: customer cust-42 is blocked"),
        (cust_1, DeadLetterReason::RetriesExhausted, 5, "database unavailable: connection refused"),
        (order_2, DeadLetterReason::Permanent, 1, "order-2 cannot be applied"),
    ];
    for (published, reason, attempts, error) in letters {
        let headers =
            info(&published.position, reason, attempts, error).to_headers(Some(&published.envelope.to_headers()));
        let offset = dead_letter(&kafka, DLQ, &published.key, &published.value, headers).await;
        events.insert(offset, published);
    }
    let garbage_origin = Position { topic: "orders".into(), partition: 0, offset: 99 };
    let garbage = info(&garbage_origin, DeadLetterReason::Decode, 0, "not a framed Avro value: bad magic byte");
    let offset = dead_letter(&kafka, DLQ, "junk", b"not avro at all", garbage.to_headers(None::<&OwnedHeaders>)).await;
    assert_eq!(offset, 3);
    let full = info(&cancel_1.position, DeadLetterReason::Permanent, 1, "cannot cancel")
        .to_headers(Some(&cancel_1.envelope.to_headers()));
    let mut without_origin = OwnedHeaders::new();
    for entry in full.iter().filter(|h| h.key != header::ORIGINAL_TOPIC) {
        without_origin = without_origin.insert(Header { key: entry.key, value: entry.value });
    }
    let offset = dead_letter(&kafka, DLQ, &cancel_1.key, &cancel_1.value, without_origin).await;
    assert_eq!(offset, 4);
    events.insert(offset, cancel_1);
    Fixture { stack, events }
}

fn offsets(letters: &Json) -> Vec<i64> {
    letters.as_array().unwrap().iter().map(|l| l["id"]["offset"].as_i64().unwrap()).collect()
}

fn request(select: Selection) -> RedriveRequest {
    RedriveRequest {
        group: GROUP.into(),
        dlq_topic: None,
        select,
        to: Target::Retry,
        retry_topic: None,
        again: false,
        execute: false,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn list_and_show_say_what_each_letter_is_and_why_it_failed() {
    let Fixture { stack, events } = fixture().await;

    let listing = stack.eventline_json(&["dlq", "list", "--group", GROUP, "--output", "json"]).await;
    assert_eq!(offsets(&listing["letters"]), [0, 1, 2, 3, 4]);
    let first = &listing["letters"][0];
    assert_eq!(first["event_type"], "com.eventline.commerce.OrderPlaced");
    assert_eq!(first["event_id"], events[&0].envelope.id.to_string());
    assert_eq!(first["key"], "order-1");
    assert_eq!(first["original_topic"], "orders");
    assert_eq!(first["original_partition"], events[&0].position.partition);
    assert_eq!(first["original_offset"], events[&0].position.offset);
    assert_eq!((first["reason"].as_str(), first["attempts"].as_u64()), (Some("permanent"), Some(1)));
    assert_eq!(first["status"], "pending");
    assert_eq!(listing["letters"][3]["event_type"], Json::Null);
    assert_eq!(listing["letters"][4]["original_topic"], Json::Null);
    assert_eq!(listing["summary"]["pending"], 5);
    assert_eq!(
        listing["summary"]["by_reason"],
        serde_json::json!({"decode": 1, "permanent": 3, "retries_exhausted": 1})
    );

    let out = stack.eventline(&["dlq", "list", "--group", GROUP]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text.lines().find(|l| l.starts_with("0:1 ")).unwrap_or_else(|| panic!("{text}"));
    for part in
        ["CustomerRegistered", "key=cust-1", "reason=retries_exhausted", "attempts=5", "pending", "connection refused"]
    {
        assert!(line.contains(part), "{part} missing from {line}");
    }
    assert!(
        text.contains("5 dead letters: 5 pending, 0 redriven; by reason: decode 1, permanent 3, retries_exhausted 1"),
        "{text}"
    );

    let detail = stack.eventline_json(&["dlq", "show", "--group", GROUP, "0", "--output", "json"]).await;
    assert_eq!(detail["value"]["order_id"], "order-1");
    assert_eq!(detail["undecodable"], Json::Null);
    assert_eq!(detail["letter"]["error"], "order-1 cannot be applied: customer cust-42 is blocked");
    let headers: Vec<&str> =
        detail["headers"].as_array().unwrap().iter().map(|h| h["name"].as_str().unwrap()).collect();
    for name in ["ce_id", "ce_type", "traceparent", header::ORIGINAL_TOPIC, header::ERROR, header::GROUP] {
        assert!(headers.contains(&name), "{name} missing from {headers:?}");
    }

    let out = stack.eventline(&["dlq", "show", "--group", GROUP, "3"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("value: cannot be decoded: not a framed Avro value"), "{text}");
    assert!(text.contains("6e 6f 74 20 61 76 72 6f"), "the bytes in hex: {text}"); // "not avro"
    assert!(text.contains("reason:   decode after 0 attempts"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn filters_select_exactly_those_letters() {
    let Fixture { stack, .. } = fixture().await;
    let kafka = stack.kafka();
    let catalog = Catalog::embedded().unwrap();
    let planned = |outcome: &eventline_cli::commands::dlq::RedriveOutcome| -> Vec<i64> {
        outcome.planned.iter().map(|p| p.letter.offset).collect()
    };
    let dry_run = |select| {
        let (kafka, catalog) = (kafka.clone(), catalog.clone());
        async move { redrive(&kafka, &catalog, &request(select), |_| {}, CancellationToken::new()).await.unwrap() }
    };

    assert_eq!(planned(&dry_run(Selection::EventType("OrderPlaced".into())).await), [0, 2]);
    let full_name = Selection::EventType("com.eventline.commerce.CustomerRegistered".into());
    assert_eq!(planned(&dry_run(full_name).await), [1]);
    assert_eq!(planned(&dry_run(Selection::EventType("PaymentFailed".into())).await), Vec::<i64>::new());
    let range = |text: &str| Selection::Offsets { range: text.parse::<OffsetRange>().unwrap(), partition: None };
    assert_eq!(planned(&dry_run(range("1..3")).await), [1, 2, 3]);
    assert_eq!(planned(&dry_run(range("3..")).await), [3, 4]);
    assert_eq!(planned(&dry_run(range("2")).await), [2]);
    assert_eq!(planned(&dry_run(Selection::All).await), [0, 1, 2, 3, 4]);

    let query = |event_type: Option<&str>, from_offset, to_offset| ListQuery {
        group: GROUP.into(),
        event_type: event_type.map(str::to_owned),
        from_offset,
        to_offset,
        ..ListQuery::default()
    };
    let listed = |listing: eventline_cli::commands::dlq::DlqListing| -> Vec<i64> {
        listing.letters.iter().map(|l| l.id.offset).collect()
    };
    assert_eq!(listed(list(&kafka, &catalog, &query(Some("OrderPlaced"), None, None)).await.unwrap()), [0, 2]);
    assert_eq!(listed(list(&kafka, &catalog, &query(None, Some(1), Some(2))).await.unwrap()), [1, 2]);
    assert_eq!(listed(list(&kafka, &catalog, &query(Some("OrderPlaced"), Some(1), None)).await.unwrap()), [2]);
    assert_eq!(listed(list(&kafka, &catalog, &query(None, None, Some(0))).await.unwrap()), [0]);

    let out = stack.eventline(&["dlq", "redrive", "--group", GROUP, "--type", "OrderPlaced", "--output", "json"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let outcome: Json = serde_json::from_slice(&out.stdout).unwrap();
    let chosen: Vec<i64> =
        outcome["planned"].as_array().unwrap().iter().map(|p| p["letter"]["offset"].as_i64().unwrap()).collect();
    assert_eq!(chosen, [0, 2]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_says_what_would_go_where_and_sends_nothing() {
    let Fixture { stack, .. } = fixture().await;
    let before = stack.ends().await;

    let out = stack.eventline(&["dlq", "redrive", "--group", GROUP, "--all"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("dry run: nothing was sent"), "{text}");
    assert_eq!(text.lines().filter(|l| l.starts_with("would send ")).count(), 5, "{text}");
    assert!(text.contains("would send billing.dlq:0:1  CustomerRegistered"), "{text}");
    assert!(text.contains("5 to send (billing.retry: 5), 0 skipped"), "{text}");

    let out = stack.eventline(&["dlq", "redrive", "--group", GROUP, "--offsets", "0..2", "--to", "original"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("→ customers partition"), "{text}");

    assert_eq!(stack.ends().await, before, "no topic moved and none was created");
}

#[tokio::test(flavor = "multi_thread")]
async fn redriving_to_the_original_topic_keeps_the_event_and_says_where_it_came_from() {
    let Fixture { stack, events } = fixture().await;

    let args =
        ["dlq", "redrive", "--group", GROUP, "--offsets", "0..1", "--to", "original", "--execute", "--output", "json"];
    let outcome = stack.eventline_json(&args).await;
    assert_eq!(outcome["sent_per_topic"], serde_json::json!({"orders": 1, "customers": 1}));
    let sent = outcome["sent"].as_array().unwrap();
    assert_eq!(sent.len(), 2);
    for marker in sent {
        let offset = marker["dlq_offset"].as_i64().unwrap();
        let original = &events[&offset];
        assert_eq!(marker["target_topic"], original.position.topic.as_str());
        assert_eq!(marker["target_partition"], original.position.partition, "back to the key's partition");
        let record = stack
            .record_at(
                original.position.topic.as_str(),
                original.position.partition,
                marker["target_offset"].as_i64().unwrap(),
            )
            .await;
        assert_eq!(record.key(), Some(original.key.as_bytes()));
        assert_eq!(record.payload(), Some(original.value.as_slice()), "the bytes are unchanged");
        assert_eq!(header_value(&record, "ce_id"), Some(original.envelope.id.to_string()));
        assert_eq!(header_value(&record, header::REDRIVEN_FROM), Some(format!("{DLQ}:0:{offset}")));
        let names: Vec<String> = record.headers().unwrap().iter().map(|h| h.key.to_owned()).collect();
        assert!(!names.iter().any(|n| n.starts_with(header::PREFIX)), "dead-letter headers dropped: {names:?}");
        assert_eq!(marker["event_id"], original.envelope.id.to_string());
    }

    let listing = stack.eventline_json(&["dlq", "list", "--group", GROUP, "--output", "json"]).await;
    let statuses: Vec<&str> =
        listing["letters"].as_array().unwrap().iter().map(|l| l["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["redriven", "redriven", "pending", "pending", "pending"]);
    let out = stack.eventline(&["dlq", "list", "--group", GROUP, "--to-offset", "0"]).await;
    let text = String::from_utf8(out.stdout).unwrap();
    let target = format!("redriven (to orders@{}:", events[&0].position.partition);
    assert!(text.lines().any(|l| l.starts_with("0:0 ") && l.contains(&target)), "{text}");

    // Again without --again: both were redriven, so nothing is sent.
    let before = stack.ends().await;
    let outcome = stack.eventline_json(&args).await;
    assert_eq!(outcome["sent"].as_array().unwrap().len(), 0);
    assert_eq!(outcome["skipped"].as_array().unwrap().len(), 2);
    assert_eq!(stack.ends().await, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_redrive_continues_where_it_stopped() {
    let Fixture { stack, .. } = fixture().await;
    let (kafka, catalog) = (stack.kafka(), Catalog::embedded().unwrap());
    let mut all = request(Selection::All);
    all.execute = true;

    let stop = CancellationToken::new();
    let first = redrive(&kafka, &catalog, &all, |_| stop.cancel(), stop.clone()).await.unwrap();
    assert!(first.interrupted);
    assert_eq!(first.sent.len(), 1, "stopped after the record in flight");
    assert_eq!(first.sent[0].target_topic, RETRY);

    let rest = redrive(&kafka, &catalog, &all, |_| {}, CancellationToken::new()).await.unwrap();
    assert!(!rest.interrupted);
    assert_eq!(rest.skipped.len(), 1);
    assert_eq!(rest.sent.len(), 4);
    assert!(rest.failed.is_empty(), "{:?}", rest.failed);
    let ends = stack.ends().await;
    assert_eq!(ends[&(RETRY.to_owned(), 0)], 5, "each letter sent once");
    assert_eq!(ends[&(MARKERS.to_owned(), 0)], 5, "and recorded once");

    let listing = list(&kafka, &catalog, &ListQuery { group: GROUP.into(), ..ListQuery::default() }).await.unwrap();
    assert!(listing.letters.iter().all(|l| l.status == LetterStatus::Redriven && l.redrives.len() == 1));
    assert_eq!((listing.summary.pending, listing.summary.redriven), (0, 5));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_with_a_clear_message_and_nothing_is_sent() {
    let Fixture { stack, .. } = fixture().await;
    let before = stack.ends().await;
    let cases: &[(&[&str], &str)] = &[
        (
            &["dlq", "list", "--group", "nobody"],
            "group nobody has no dead-letter topic nobody.dlq: nothing was dead-lettered",
        ),
        (
            &["dlq", "redrive", "--group", "nobody", "--all", "--execute"],
            "group nobody has no dead-letter topic nobody.dlq",
        ),
        (
            &["dlq", "list", "--group", GROUP, "--dlq-topic", "no.such.dlq"],
            "no.such.dlq given with --dlq-topic does not exist",
        ),
        (&["dlq", "redrive", "--group", GROUP, "--offsets", "3..x", "--execute"], "`3..x` is not an offset range"),
        (
            &["dlq", "redrive", "--group", GROUP, "--offsets", "4..2", "--execute"],
            "the last offset is before the first",
        ),
        (
            &["dlq", "list", "--group", GROUP, "--from-offset", "3", "--to-offset", "1"],
            "the last offset is before the first",
        ),
        (
            &["dlq", "redrive", "--group", GROUP, "--offsets", "2..9", "--execute"],
            "offset 9 is past the end of billing.dlq partition 0 (its offsets are 0 to 4)",
        ),
        (&["dlq", "show", "--group", GROUP, "5"], "offset 5 is past the end of billing.dlq partition 0"),
        (&["dlq", "list", "--group", GROUP, "--partition", "2"], "billing.dlq has no partition 2"),
        (&["dlq", "redrive", "--group", GROUP, "--type", "OrderPlacd", "--execute"], "unknown event type `OrderPlacd`"),
        (&["dlq", "list", "--group", GROUP, "--type", "OrderPlacd"], "unknown event type `OrderPlacd`"),
        (
            &["dlq", "redrive", "--group", GROUP, "--all", "--to", "original", "--execute"],
            "dead letter billing.dlq:0:4 has no eventline_dlq_original_topic header",
        ),
        (
            &["dlq", "redrive", "--group", GROUP, "--all", "--retry-topic", "billing.again", "--execute"],
            "cannot redrive to billing.again: the topic does not exist",
        ),
        (&["dlq", "redrive", "--group", GROUP, "--execute"], "--all"),
        (&["dlq", "redrive", "--group", GROUP, "--all", "--offsets", "1..2", "--execute"], "cannot be used with"),
    ];
    for (args, expected) in cases {
        let out = stack.eventline(args).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded: {}", String::from_utf8_lossy(&out.stdout));
        assert!(stderr.contains(expected), "{args:?}: expected `{expected}` in: {stderr}");
    }
    assert_eq!(stack.ends().await, before, "nothing was sent and no topic was created");

    let kafka = stack.kafka();
    let registry = client(&stack.registry.url);
    let missing = ShowQuery { group: GROUP.into(), dlq_topic: None, partition: 0, offset: 7 };
    let error = show(&kafka, &registry, &missing).await.unwrap_err();
    assert!(matches!(error, eventline_cli::commands::dlq::DlqError::OffsetPastEnd { offset: 7, .. }), "{error}");
}

/// `OrderPlaced` with one more optional field: a later, compatible version of the schema.
fn order_placed_v2(catalog: &Catalog) -> String {
    let mut json: Json = serde_json::from_str(&catalog.event("OrderPlaced").unwrap().schema_json).unwrap();
    json["fields"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "coupon", "type": ["null", "string"], "default": null}));
    json.to_string()
}

/// `event` framed with the writer schema `v2` under `id` (which the registry may not know).
fn encode_v2(catalog: &Catalog, v2: &str, id: SchemaId, event: &OrderPlaced) -> Vec<u8> {
    let v1 = catalog.event("OrderPlaced").unwrap().schema.clone();
    let bytes = avro::encode(SchemaId(0), &v1, event).unwrap();
    let apache_avro::types::Value::Record(mut fields) =
        avro::decode_value(&bytes[avro::HEADER_LEN..], &v1, None).unwrap()
    else {
        panic!("not a record")
    };
    fields.push(("coupon".into(), apache_avro::types::Value::Union(0, Box::new(apache_avro::types::Value::Null))));
    let v2 = apache_avro::Schema::parse_str(v2).unwrap();
    avro::encode_value(id, &v2, apache_avro::types::Value::Record(fields)).unwrap()
}

/// The projector's dead letters, redriven once their causes are fixed, are applied exactly once.
///
/// Two poison events: an `OrderPlaced` framed with a schema id the registry does not know (its
/// schema was registered, then deleted for good; registering the same schema again brings the
/// same id back, which is the fix), and an `OrderPlaced` the read model's database refuses (a
/// trigger, dropped as the fix) until the retries run out.
#[tokio::test(flavor = "multi_thread")]
async fn the_projector_applies_redriven_dead_letters_exactly_once() {
    let stack = Stack::start().await;
    let catalog = Catalog::embedded().unwrap();
    let group = eventline_projector::config::GROUP_ID;
    let dlq = format!("{group}.dlq");
    let retry = format!("{group}.retry");

    // A schema id that will be unknown: register a newer OrderPlaced, then delete it for good.
    let v2 = order_placed_v2(&catalog);
    let subject = "orders-coupons-value";
    let registrar = client(&stack.registry.url);
    let unknown_id = registrar.register(subject, &v2).await.unwrap();
    let http = reqwest::Client::new();
    for permanent in ["", "?permanent=true"] {
        let url = format!("{}/subjects/{subject}{permanent}", stack.registry.url);
        let response = http.delete(url).send().await.unwrap();
        assert!(response.status().is_success(), "{}", response.text().await.unwrap());
    }
    assert!(client(&stack.registry.url).schema_by_id(unknown_id).await.is_err(), "the id is unknown now");

    let db_file = SqliteDatabase::create();
    let db = Database::connect(&DatabaseSettings { url: db_file.url().to_owned(), ..DatabaseSettings::default() })
        .await
        .unwrap();
    let mut settings = ProjectorSettings::default();
    settings.consumer.batch_linger = Duration::from_millis(20);
    settings.consumer.commit_interval = Duration::from_millis(200);
    settings.consumer.retry.max_attempts = 2;
    settings.consumer.retry.initial_backoff = Duration::from_millis(10);
    settings.consumer.retry.max_backoff = Duration::from_millis(20);
    settings.listen = "127.0.0.1:0".into();
    let platform = Platform {
        kafka: stack.kafka(),
        db: db.clone(),
        registry_client: client(&stack.registry.url),
        catalog: catalog.clone(),
        metrics: prometheus::Registry::new(),
    };
    let app = prepare::<ProjectorService>(platform, settings).await.unwrap();
    let store = app.service().store().clone();
    let orders_table = format!("{}orders", store.tables().prefix());
    sqlx::query(&format!(
        "CREATE TRIGGER refuse_order_t BEFORE INSERT ON {orders_table} WHEN NEW.order_id = 'order-t' \
         BEGIN SELECT RAISE(ABORT, 'order-t is refused'); END"
    ))
    .execute(db.pool())
    .await
    .unwrap();
    let token = CancellationToken::new();
    let projector = tokio::spawn(app.run(token.clone()));

    let placed = |order: &str, customer: &str, total: i64| OrderPlaced {
        customer_id: customer.into(),
        total_minor: total,
        lines: vec![eventline_common::events::OrderLine { sku: "sku-1".into(), quantity: 1, unit_price_minor: total }],
        ..samples::order_placed(order)
    };
    let shipped = |order: &str| OrderShipped {
        order_id: order.into(),
        carrier: "DHL".into(),
        tracking_number: Some("T-1".into()),
        shipped_at: samples::at(1_795_000_200_000),
    };
    let registered = CustomerRegistered {
        customer_id: "cust-1".into(),
        email: "ada@example.com".into(),
        name: "Ada".into(),
        registered_at: samples::at(1_794_000_000_000),
    };
    let captured = PaymentCaptured {
        payment_id: "pay-1".into(),
        order_id: "order-1".into(),
        amount_minor: 100,
        currency: "EUR".into(),
        captured_at: samples::at(1_795_000_100_000),
    };
    let (refused, unreadable) = (placed("order-t", "cust-2", 50), placed("order-u", "cust-1", 70));
    let mut recorded = Vec::new();
    let mut last = BTreeMap::new();
    let mut note = |published: Published, fact: Fact| {
        recorded.push(Recorded::new(published.envelope.id, published.envelope.time, fact));
        let position = published.position;
        last.insert((position.topic.clone(), position.partition), position);
        published.envelope.id
    };
    note(stack.publish(&registered, Uuid::new_v4()).await, Fact::CustomerRegistered(registered.clone()));
    let order_1 = placed("order-1", "cust-1", 100);
    note(stack.publish(&order_1, Uuid::new_v4()).await, Fact::OrderPlaced(order_1.clone()));
    note(stack.publish(&captured, Uuid::new_v4()).await, Fact::PaymentCaptured(captured.clone()));
    let refused_id = note(stack.publish(&refused, Uuid::new_v4()).await, Fact::OrderPlaced(refused.clone()));
    let frame = encode_v2(&catalog, &v2, unknown_id, &unreadable);
    let envelope = Stack::envelope("com.eventline.commerce.OrderPlaced", Uuid::new_v4());
    let unreadable_id =
        note(stack.publish_bytes("orders", "order-u", frame, envelope).await, Fact::OrderPlaced(unreadable.clone()));
    for order in ["order-1", "order-u"] {
        note(stack.publish(&shipped(order), Uuid::new_v4()).await, Fact::OrderShipped(shipped(order)));
    }
    let expected = ReadModel::fold(&recorded);

    let kafka = stack.kafka();
    let everything = ListQuery { group: group.into(), ..ListQuery::default() };
    let letters = eventually("both poison events dead-lettered", WAIT, || async {
        let listing = list(&kafka, &catalog, &everything).await.ok()?;
        (listing.letters.len() == 2).then_some(listing.letters)
    })
    .await;
    eventually("the rest applied", WAIT, || async {
        for position in last.values() {
            if !store.has_passed(group, position).await.unwrap() {
                return None;
            }
        }
        Some(())
    })
    .await;
    let by_id = |id: Uuid| letters.iter().find(|l| l.event_id.as_deref() == Some(id.to_string().as_str())).unwrap();
    let (refused_letter, unreadable_letter) = (by_id(refused_id), by_id(unreadable_id));
    assert_eq!(refused_letter.reason.as_deref(), Some("retries_exhausted"));
    assert!(refused_letter.attempts.is_some_and(|n| n >= 2), "{refused_letter:?}");
    assert!(refused_letter.error.as_deref().unwrap().contains("order-t is refused"), "{refused_letter:?}");
    assert_eq!(unreadable_letter.reason.as_deref(), Some("unknown_schema"));
    for letter in [refused_letter, unreadable_letter] {
        assert_eq!(letter.id.topic, dlq);
        assert_eq!(letter.original_topic.as_deref(), Some("orders"));
        assert_eq!(letter.group.as_deref(), Some(group));
        assert_eq!(letter.status, LetterStatus::Pending);
    }
    assert_eq!(store.order("order-t").await.unwrap(), None);
    assert_ne!(store.snapshot().await.unwrap(), expected, "not there yet");

    // The fixes: the schema registered again gets its id back; the trigger goes.
    assert_eq!(registrar.register(subject, &v2).await.unwrap(), unknown_id);
    sqlx::query("DROP TRIGGER refuse_order_t").execute(db.pool()).await.unwrap();

    let outcome =
        stack.eventline_json(&["dlq", "redrive", "--group", group, "--all", "--execute", "--output", "json"]).await;
    assert_eq!(outcome["sent_per_topic"], serde_json::json!({ retry.clone(): 2 }));
    let applied = |outcome: Json| {
        let store = store.clone();
        async move {
            let sent: Vec<Position> = outcome["sent"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| serde_json::from_value::<eventline_cli::commands::dlq::RedriveMarker>(m.clone()).unwrap())
                .map(|m| Position { topic: m.target_topic, partition: m.target_partition, offset: m.target_offset })
                .collect();
            eventually("the redriven events handled", WAIT, || async {
                for position in &sent {
                    if !store.has_passed(group, position).await.unwrap() {
                        return None;
                    }
                }
                Some(())
            })
            .await;
        }
    };
    applied(outcome).await;
    assert_eq!(store.snapshot().await.unwrap(), expected, "the read model is the fold of every event");

    let listing = stack.eventline_json(&["dlq", "list", "--group", group, "--output", "json"]).await;
    assert_eq!(listing["summary"]["redriven"], 2, "{listing}");

    let again = stack
        .eventline_json(&["dlq", "redrive", "--group", group, "--all", "--again", "--execute", "--output", "json"])
        .await;
    assert_eq!(again["sent"].as_array().unwrap().len(), 2);
    applied(again).await;
    assert_eq!(store.snapshot().await.unwrap(), expected, "applied once: the second redrive changed nothing");
    assert_eq!(list(&kafka, &catalog, &everything).await.unwrap().letters.len(), 2, "and failed nothing");

    token.cancel();
    tokio::time::timeout(WAIT, projector).await.unwrap().unwrap().unwrap();
}
