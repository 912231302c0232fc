//! `eventline tail` and `eventline groups` against a real Apache Kafka broker and the Eventline
//! registry.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use eventline_cli::commands::groups::{describe, list, GroupDescription, OffsetsFrom, TopicPartitions};
use eventline_cli::commands::tail::{resolve_event_type, tail, StartAt, TailOptions, TailRecord};
use eventline_common::catalog::Catalog;
use eventline_common::contracts::Contracts;
use eventline_common::db::{Database, DatabaseSettings};
use eventline_common::kafka::consumer::OffsetStore;
use eventline_common::kafka::producer::{EventProducer, ProducerSettings};
use eventline_common::kafka::KafkaSettings;
use eventline_common::publish::{prepare, Origin, Publisher};
use eventline_e2e::TestRegistry as Registry;
use eventline_testkit::{eventually, unique, Broker, SqliteDatabase};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;

const TOPIC: &str = "customers";
const EARLY: &str = "2026-01-01T00:00:00Z";
const LATE: &str = "2026-06-01T00:00:00Z";
const CUT: &str = "2026-03-01T00:00:00Z";
const WAIT: Duration = Duration::from_secs(30);

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
    let publisher =
        Publisher::new(EventProducer::new(&kafka, &ProducerSettings::default()).unwrap(), contracts.clone());
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
    let read = tail(&kafka, &stack.registry.client, TOPIC, options, std::future::pending(), |record| {
        records.push(record);
        Ok(())
    });
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
    assert_eq!(
        types(&all),
        ["-", "CustomerEmailChanged", "CustomerRegistered", "CustomerRegistered", "CustomerRegistered"]
    );
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

    let out = eventline(
        &stack,
        &["tail", TOPIC, "--from", "earliest", "--type", "CustomerRegistered", "--output", "json", "--headers"],
    )
    .await;
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
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not exist"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn eventline_with_database(stack: &Stack, args: &[&str], database_url: &str) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_eventline"))
        .args(args)
        .env("EVENTLINE_KAFKA__BOOTSTRAP_SERVERS", stack.broker.bootstrap_servers())
        .env("EVENTLINE_DATABASE__URL", database_url)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap()
}

/// Commits `offsets` (partition, next offset) on `topic` for `group` from outside the group
/// (no subscription), as `eventline replay` does.
async fn commit(kafka: &KafkaSettings, group: &str, topic: &str, offsets: &[(i32, i64)]) {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    let consumer: BaseConsumer =
        kafka.client_config().set("group.id", group).set("enable.auto.commit", "false").create().unwrap();
    let mut list = rdkafka::TopicPartitionList::new();
    for (partition, offset) in offsets {
        list.add_partition_offset(topic, *partition, rdkafka::Offset::Offset(*offset)).unwrap();
    }
    tokio::task::spawn_blocking(move || consumer.commit(&list, CommitMode::Sync).unwrap()).await.unwrap();
}

/// A consumer in `group` subscribed to `topic`, polling on a thread of its own, with a client id
/// of its own. It commits nothing; [`leave`](Self::leave) closes it, which leaves the group.
struct LiveConsumer {
    client_id: String,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LiveConsumer {
    fn join(kafka: &KafkaSettings, group: &str, topic: &str) -> Self {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let client_id = unique("live");
        let consumer: BaseConsumer = kafka
            .client_config()
            .set("client.id", &client_id)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        consumer.subscribe(&[topic]).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                let _message = consumer.poll(Duration::from_millis(100));
            }
        });
        Self { client_id, stop, thread: Some(thread) }
    }

    fn leave(mut self) {
        self.stop_thread();
    }

    fn stop_thread(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

impl Drop for LiveConsumer {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

/// Waits until `describe` reports `group` in `state` with `members` members, and returns that
/// description.
async fn described_as(
    kafka: &KafkaSettings,
    store: Option<&OffsetStore>,
    group: &str,
    state: &str,
    members: usize,
) -> GroupDescription {
    let catalog = Catalog::embedded().unwrap();
    eventually(&format!("group {group} {state} with {members} member(s)"), WAIT, || async {
        let description = describe(kafka, store, &catalog, group, &[]).await.unwrap();
        let membership = &description.membership;
        let matches = membership.state.as_deref() == Some(state)
            && membership.members.as_ref().map(Vec::len) == Some(members)
            && membership.members.iter().flatten().all(|m| !m.assignment.is_empty());
        matches.then_some(description)
    })
    .await
}

fn assigned(topic: &str, partitions: &[i32]) -> Vec<TopicPartitions> {
    vec![TopicPartitions { topic: topic.to_owned(), partitions: partitions.to_vec() }]
}

#[tokio::test(flavor = "multi_thread")]
async fn groups_describe_shows_committed_end_lag_state_and_members() {
    let stack = stack_with_events().await;
    let kafka = stack.broker.kafka_settings();
    let catalog = Catalog::embedded().unwrap();
    let all = read(&stack, &options(StartAt::Earliest)).await;
    let mut ends: std::collections::BTreeMap<i32, i64> = std::collections::BTreeMap::new();
    for record in &all {
        let end = ends.entry(record.partition).or_default();
        *end = (*end).max(record.offset + 1);
    }
    let group = unique("ops");
    let commits: Vec<(i32, i64)> = (0..3).map(|p| (p, ends.get(&p).copied().unwrap_or(0).min(1))).collect();
    commit(&kafka, &group, TOPIC, &commits).await;

    let description = describe(&kafka, None, &catalog, &group, &[]).await.unwrap();
    assert_eq!(description.offsets_from, OffsetsFrom::Kafka);
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
    // Committing from outside makes the group known to the broker, with nobody in it.
    let membership = &description.membership;
    assert_eq!((membership.state.as_deref(), membership.members.as_deref()), (Some("Empty"), Some(&[][..])));
    assert_eq!(membership.membership_note, None);

    let out = eventline(&stack, &["groups", "describe", &group, "--output", "json"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["total_lag"], expected_total);
    assert_eq!((&json["state"], &json["members"]), (&json!("Empty"), &json!([])), "{json:#}");

    // A consumer joins: the broker reports the group Stable, the member, and its partitions.
    let live = LiveConsumer::join(&kafka, &group, TOPIC);
    let description = described_as(&kafka, None, &group, "Stable", 1).await;
    let member = &description.membership.members.as_ref().unwrap()[0];
    assert_eq!(member.client_id, live.client_id);
    assert!(member.member_id.starts_with(&live.client_id), "Kafka names members after their client: {member:?}");
    assert!(member.host.contains("127.0.0.1"), "{member:?}");
    assert_eq!(member.assignment, assigned(TOPIC, &[0, 1, 2]));
    assert_eq!(member.assignment_error, None);
    assert_eq!(description.total_lag, expected_total, "the member commits nothing");

    let out = eventline(&stack, &["groups", "describe", &group, "--output", "json"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["state"], "Stable", "{json:#}");
    let expected_member = json!({"member_id": member.member_id, "client_id": live.client_id, "host": member.host,
        "assignment": [{"topic": TOPIC, "partitions": [0, 1, 2]}]});
    assert_eq!(json["members"], json!([expected_member]));
    let out = eventline(&stack, &["groups", "describe", &group]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("state: Stable, 1 member\n"), "{stdout}");
    let member_line =
        format!("member {} (client {}, host {}): {TOPIC} 0,1,2", member.member_id, live.client_id, member.host);
    assert!(stdout.contains(&member_line), "{stdout}");
    let out = eventline(&stack, &["groups", "--group", &group]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().find(|l| l.starts_with(&group)).unwrap_or_else(|| panic!("{stdout}"));
    let columns: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(columns, [group.as_str(), "Stable", "1", "kafka", &expected_total.to_string(), TOPIC], "{stdout}");

    // It closes: the group is Empty again, with no members.
    live.leave();
    let description = described_as(&kafka, None, &group, "Empty", 0).await;
    assert_eq!(description.total_lag, expected_total);
    let out = eventline(&stack, &["groups", "describe", &group]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("state: Empty, 0 members\n") && !stdout.contains("member "), "{stdout}");

    let out = eventline(&stack, &["groups", "describe", "no-such-group"]).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("has no offsets"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = eventline(&stack, &["groups", "describe", &group, "--topic", "no-such-topic"]).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not exist"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn groups_read_transactional_offsets_from_the_database_and_members_from_the_broker() {
    use eventline_common::kafka::consumer::PartitionOffset;
    let stack = stack_with_events().await;
    let kafka = stack.broker.kafka_settings();
    let catalog = Catalog::embedded().unwrap();
    let db_file = SqliteDatabase::create();
    let settings = DatabaseSettings { url: db_file.url().to_owned(), ..DatabaseSettings::default() };
    let store = OffsetStore::new(Database::connect(&settings).await.unwrap());
    store.migrate().await.unwrap();
    let topic = unique("stored");
    stack.broker.create_topics(&[(&topic, 2)]).await;
    let producer: FutureProducer = kafka.client_config().create().unwrap();
    let mut written = Vec::new();
    for (partition, count) in [(0, 5), (1, 1)] {
        for _ in 0..count {
            let record: FutureRecord<'_, str, str> =
                FutureRecord::to(&topic).partition(partition).key("k").payload("x");
            let delivery = producer.send(record, Duration::from_secs(10)).await.map_err(|(e, _)| e).unwrap();
            written.push((delivery.partition, delivery.offset));
        }
    }
    assert_eq!(written, [(0, 0), (0, 1), (0, 2), (0, 3), (0, 4), (1, 0)], "the log ends at 5 and 1");
    // The group handled 2 of partition 0's 5 records and partition 1's one.
    let group = unique("projector");
    let stored = |partition, next_offset| PartitionOffset { topic: topic.clone(), partition, next_offset };
    store.store(&group, &[stored(0, 2), stored(1, 1)]).await.unwrap();
    let expected_partitions = |description: &GroupDescription| {
        let rows: Vec<(&str, i32, Option<i64>, i64, i64)> =
            description.partitions.iter().map(|p| (p.topic.as_str(), p.partition, p.committed, p.end, p.lag)).collect();
        assert_eq!(rows, [(topic.as_str(), 0, Some(2), 5, 3), (topic.as_str(), 1, Some(1), 1, 0)], "{description:?}");
        assert_eq!((description.offsets_from, description.total_lag), (OffsetsFrom::Database, 3));
    };

    let description = describe(&kafka, Some(&store), &catalog, &group, &[]).await.unwrap();
    expected_partitions(&description);
    let membership = &description.membership;
    assert_eq!((membership.state.as_deref(), membership.members.as_deref()), (None, Some(&[][..])));
    let note = membership.membership_note.as_deref().unwrap_or_default();
    assert!(note.contains(&format!("the broker does not know group `{group}`")), "{note}");

    // Kafka holds another offset for the group (a trailing copy behind): the database's count.
    commit(&kafka, &group, &topic, &[(0, 4)]).await;
    let description = describe(&kafka, Some(&store), &catalog, &group, &[]).await.unwrap();
    expected_partitions(&description);
    assert_eq!(description.membership.state.as_deref(), Some("Empty"));

    let live = LiveConsumer::join(&kafka, &group, &topic);
    let description = described_as(&kafka, Some(&store), &group, "Stable", 1).await;
    expected_partitions(&description);
    let member = &description.membership.members.as_ref().unwrap()[0];
    assert_eq!((member.client_id.as_str(), &member.assignment), (live.client_id.as_str(), &assigned(&topic, &[0, 1])));

    let listed = list(&kafka, Some(&store), &catalog, &[]).await.unwrap();
    let summary = listed.groups.iter().find(|g| g.group == group).expect("the stored group is listed");
    assert_eq!((summary.total_lag, summary.topics.clone()), (Some(3), vec![topic.clone()]));
    assert_eq!(summary.membership, description.membership);

    let out = eventline_with_database(&stack, &["groups", "describe", &group], db_file.url()).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("offsets from the database") && stdout.contains("total lag: 3"), "{stdout}");
    assert!(stdout.contains("state: Stable, 1 member\n"), "{stdout}");
    let member_line =
        format!("member {} (client {}, host {}): {topic} 0,1", member.member_id, live.client_id, member.host);
    assert!(stdout.contains(&member_line), "{stdout}");
    let out = eventline_with_database(&stack, &["groups", "--output", "json"], db_file.url()).await;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let listed = json["groups"].as_array().unwrap().iter().find(|g| g["group"] == group.as_str()).unwrap();
    assert_eq!(
        (&listed["state"], &listed["total_lag"], &listed["offsets_from"]),
        (&json!("Stable"), &json!(3), &json!("database"))
    );
    assert_eq!(listed["members"][0]["assignment"], json!([{"topic": topic, "partitions": [0, 1]}]), "{listed:#}");

    live.leave();
    let description = described_as(&kafka, Some(&store), &group, "Empty", 0).await;
    expected_partitions(&description);
}
