//! `eventline tail` and `eventline groups` against a real Tansu broker and the Eventline registry.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use eventline_cli::commands::tail::{resolve_event_type, tail, StartAt, TailOptions, TailRecord};
use eventline_common::catalog::Catalog;
use eventline_common::contracts::Contracts;
use eventline_common::db::{Database, DatabaseSettings};
use eventline_common::kafka::producer::{EventProducer, ProducerSettings};
use eventline_common::publish::{prepare, Origin, Publisher};
use eventline_e2e::TestRegistry as Registry;
use eventline_testkit::{Broker, SqliteDatabase};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;

const TOPIC: &str = "customers";
const EARLY: &str = "2026-01-01T00:00:00Z";
const LATE: &str = "2026-06-01T00:00:00Z";
const CUT: &str = "2026-03-01T00:00:00Z";

struct Stack {
    broker: Broker,
    registry: Registry,
}

/// A broker with the catalog's topics, the registry with its schemas, and on `customers`:
/// three `CustomerRegistered` (c1, c2, c3) at EARLY, one `CustomerEmailChanged` (c1) at LATE,
/// and one record of garbage bytes (key `junk`) at LATE.
async fn stack_with_events() -> Stack {
    let broker = Broker::start().await;
    let registry = Registry::start().await;
    let catalog = Catalog::embedded().unwrap();
    let topics: Vec<(&str, i32)> = catalog.topics().iter().map(|t| (t.name.as_str(), t.partitions)).collect();
    broker.create_topics(&topics).await;
    let contracts = Arc::new(Contracts::register(catalog, &registry.client).await.unwrap());
    let kafka = broker.kafka_settings();
    let publisher = Publisher::new(EventProducer::new(&kafka, &ProducerSettings::default()).unwrap(), contracts.clone());
    let origin = Origin { source: "/test".into(), traceparent: None, correlation_id: None };
    let mut events = Vec::new();
    for id in ["c1", "c2", "c3"] {
        events.push(json!({"type": "CustomerRegistered", "time": EARLY, "data": {
            "customer_id": id, "email": format!("{id}@example.com"), "name": id, "registered_at": EARLY}}));
    }
    events.push(json!({"type": "CustomerEmailChanged", "time": LATE, "data": {
        "customer_id": "c1", "new_email": "new@example.com", "changed_at": LATE}}));
    for event in &events {
        let prepared = prepare(&contracts, event, &origin).unwrap();
        publisher.publish(&prepared).await.unwrap();
    }
    let raw: FutureProducer = kafka.client_config().create().unwrap();
    let late_ms = chrono::DateTime::parse_from_rfc3339(LATE).unwrap().timestamp_millis();
    raw.send(
        FutureRecord::to(TOPIC).key("junk").payload(&b"not avro at all"[..]).timestamp(late_ms),
        Duration::from_secs(10),
    )
    .await
    .map_err(|(e, _)| e)
    .unwrap();
    Stack { broker, registry }
}

fn options(from: StartAt) -> TailOptions {
    TailOptions { from, follow: false, event_type: None, key: None, limit: None, headers: false }
}

async fn read(stack: &Stack, options: &TailOptions) -> Vec<TailRecord> {
    let mut records = Vec::new();
    let kafka = stack.broker.kafka_settings();
    let read = tail(
        &kafka,
        &stack.registry.client,
        TOPIC,
        options,
        std::future::pending(),
        |record| {
            records.push(record);
            Ok(())
        },
    );
    tokio::time::timeout(Duration::from_secs(60), read).await.expect("tail did not stop").unwrap();
    records.sort_by_key(|r| (r.partition, r.offset));
    records
}

fn types(records: &[TailRecord]) -> Vec<String> {
    let mut types: Vec<String> = records
        .iter()
        .map(|r| r.event_type.clone().unwrap_or_else(|| "-".into()).rsplit('.').next().unwrap().to_owned())
        .collect();
    types.sort();
    types
}

#[tokio::test(flavor = "multi_thread")]
async fn tail_reads_filters_and_reports_garbage() {
    let stack = stack_with_events().await;

    let all = read(&stack, &options(StartAt::Earliest)).await;
    assert_eq!(all.len(), 5, "{all:#?}");
    assert_eq!(types(&all), ["-", "CustomerEmailChanged", "CustomerRegistered", "CustomerRegistered", "CustomerRegistered"]);
    let garbage = all.iter().find(|r| r.key.as_deref() == Some("junk")).unwrap();
    assert!(garbage.value.is_none());
    assert!(garbage.error.as_deref().unwrap_or_default().contains("not a framed Avro value"), "{garbage:?}");
    let c2 = all.iter().find(|r| r.key.as_deref() == Some("c2")).unwrap();
    assert_eq!(c2.value.as_ref().unwrap()["email"], "c2@example.com");
    assert!(c2.id.is_some() && c2.error.is_none(), "{c2:?}");

    let catalog = Catalog::embedded().unwrap();
    let mut by_type = options(StartAt::Earliest);
    by_type.event_type = Some(resolve_event_type(&catalog, "CustomerRegistered").unwrap());
    let registered = read(&stack, &by_type).await;
    assert_eq!(types(&registered), ["CustomerRegistered"; 3]);
    assert!(resolve_event_type(&catalog, "NoSuchEvent").is_err());

    let mut by_key = options(StartAt::Earliest);
    by_key.key = Some("c1".into());
    assert_eq!(types(&read(&stack, &by_key).await), ["CustomerEmailChanged", "CustomerRegistered"]);

    let after_cut = read(&stack, &options(StartAt::parse(CUT).unwrap())).await;
    assert_eq!(types(&after_cut), ["-", "CustomerEmailChanged"]);

    let mut limited = options(StartAt::Earliest);
    limited.limit = Some(2);
    assert_eq!(read(&stack, &limited).await.len(), 2);

    assert!(read(&stack, &options(StartAt::Latest)).await.is_empty());
    assert!(StartAt::parse("last tuesday").is_err());
}

async fn eventline(stack: &Stack, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_eventline"))
        .args(args)
        .env("EVENTLINE_KAFKA__BOOTSTRAP_SERVERS", stack.broker.bootstrap_servers())
        .env("EVENTLINE_SCHEMA_REGISTRY__URL", &stack.registry.url)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn tail_binary_prints_json_lines_and_refuses_bad_input() {
    let stack = stack_with_events().await;

    let out = eventline(&stack, &["tail", TOPIC, "--from", "earliest", "--type", "CustomerRegistered", "--output", "json", "--headers"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    for line in &lines {
        assert_eq!(line["type"], "com.eventline.commerce.CustomerRegistered");
        assert_eq!(line["topic"], TOPIC);
        assert_eq!(line["value"]["customer_id"], line["key"]);
        assert_eq!(line["headers"]["ce_type"], line["type"], "{line}");
    }

    let out = eventline(&stack, &["tail", TOPIC, "--from", "not-a-date"]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("RFC 3339"));

    let out = eventline(&stack, &["tail", "no-such-topic"]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Commits `offsets` (partition, next offset) on `customers` for `group` the way a Kafka-mode
/// consumer does: assigned partitions, no subscription.
fn commit(kafka: &eventline_common::kafka::KafkaSettings, group: &str, offsets: &[(i32, i64)]) {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    let consumer: BaseConsumer =
        kafka.client_config().set("group.id", group).set("enable.auto.commit", "false").create().unwrap();
    let mut list = rdkafka::TopicPartitionList::new();
    for (partition, offset) in offsets {
        list.add_partition_offset(TOPIC, *partition, rdkafka::Offset::Offset(*offset)).unwrap();
    }
    consumer.assign(&list).unwrap();
    consumer.commit(&list, CommitMode::Sync).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn groups_describe_shows_committed_end_and_lag() {
    use eventline_cli::commands::groups::{describe, OffsetsFrom};
    let stack = stack_with_events().await;
    let kafka = stack.broker.kafka_settings();
    let catalog = Catalog::embedded().unwrap();
    let all = read(&stack, &options(StartAt::Earliest)).await;
    let mut ends: std::collections::BTreeMap<i32, i64> = std::collections::BTreeMap::new();
    for record in &all {
        let end = ends.entry(record.partition).or_default();
        *end = (*end).max(record.offset + 1);
    }
    let group = eventline_testkit::unique("ops");
    let commits: Vec<(i32, i64)> = (0..3).map(|p| (p, ends.get(&p).copied().unwrap_or(0).min(1))).collect();
    let k = kafka.clone();
    let g = group.clone();
    let c = commits.clone();
    tokio::task::spawn_blocking(move || commit(&k, &g, &c)).await.unwrap();

    let description = describe(&kafka, None, &catalog, &group, &[]).await.unwrap();
    assert_eq!(description.offsets_from, OffsetsFrom::Kafka);
    assert!(description.state.is_none());
    assert_eq!(description.partitions.len(), 3, "{description:?}");
    let mut expected_total = 0;
    for p in &description.partitions {
        assert_eq!(p.topic, TOPIC);
        let end = ends.get(&p.partition).copied().unwrap_or(0);
        let committed = commits.iter().find(|(q, _)| *q == p.partition).unwrap().1;
        assert_eq!((p.committed, p.end, p.lag), (Some(committed), end, end - committed), "{p:?}");
        expected_total += end - committed;
    }
    assert_eq!(description.total_lag, expected_total);
    assert_eq!(expected_total, 5 - commits.iter().map(|(_, c)| c).sum::<i64>());

    let out = eventline(&stack, &["groups", "describe", &group, "--output", "json"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["total_lag"], expected_total);

    let out = eventline(&stack, &["groups", "describe", "no-such-group"]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no offsets"), "{}", String::from_utf8_lossy(&out.stderr));

    let out = eventline(&stack, &["groups", "describe", &group, "--topic", "no-such-topic"]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"), "{}", String::from_utf8_lossy(&out.stderr));

    let out = eventline(&stack, &["groups", "--group", &group]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.lines().any(|l| l.starts_with(&group) && l.contains(&expected_total.to_string())), "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn groups_reads_transactional_offsets_from_the_database() {
    use eventline_cli::commands::groups::{describe, list, OffsetsFrom};
    use eventline_common::kafka::consumer::{OffsetStore, PartitionOffset};
    let stack = stack_with_events().await;
    let kafka = stack.broker.kafka_settings();
    let catalog = Catalog::embedded().unwrap();
    let db_file = SqliteDatabase::create();
    let settings = DatabaseSettings { url: db_file.url().to_owned(), ..DatabaseSettings::default() };
    let store = OffsetStore::new(Database::connect(&settings).await.unwrap());
    store.migrate().await.unwrap();
    let group = eventline_testkit::unique("projector");
    let ends = eventline_common::kafka::consumer::group_lag(
        &kafka,
        &group,
        &[TOPIC.to_owned()],
        eventline_common::kafka::consumer::OffsetSource::Kafka,
    )
    .await
    .unwrap();
    let positions: Vec<PartitionOffset> = ends
        .iter()
        .map(|p| PartitionOffset { topic: TOPIC.into(), partition: p.partition, next_offset: p.end })
        .collect();
    store.store(&group, &positions).await.unwrap();

    let description = describe(&kafka, Some(&store), &catalog, &group, &[]).await.unwrap();
    assert_eq!(description.offsets_from, OffsetsFrom::Database);
    assert_eq!(description.total_lag, 0);
    assert!(description.partitions.iter().all(|p| p.committed == Some(p.end)), "{description:?}");

    let listed = list(&kafka, Some(&store), &catalog, &[]).await.unwrap();
    let summary = listed.groups.iter().find(|g| g.group == group).expect("the stored group is listed");
    assert_eq!((summary.total_lag, summary.topics.clone()), (Some(0), vec![TOPIC.to_owned()]));

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_eventline"))
        .args(["groups", "describe", &group])
        .env("EVENTLINE_KAFKA__BOOTSTRAP_SERVERS", stack.broker.bootstrap_servers())
        .env("EVENTLINE_DATABASE__URL", db_file.url())
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("offsets from the database") && stdout.contains("total lag: 0"), "{stdout}");
    assert!(stdout.contains("state and members: not available"), "{stdout}");
}
