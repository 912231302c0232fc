//! `eventline replay` (the real binary) against a real Apache Kafka broker, the Eventline registry and
//! SQLite: consumers on the shared runtime read, stop, get their offsets reset, and read again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventline_common::catalog::Catalog;
use eventline_common::contracts::Contracts;
use eventline_common::db::{Database, DatabaseSettings};
use eventline_common::envelope::{Envelope, TraceParent};
use eventline_common::events::{samples, OrderPlaced};
use eventline_common::kafka::consumer::{
    group_lag, Batch, ConsumerError, ConsumerMetrics, ConsumerRuntime, ConsumerSettings, Handler, HandlerError, Member,
    MemberRegistry, OffsetMode, OffsetSource, OffsetStore,
};
use eventline_common::kafka::KafkaSettings;
use eventline_common::registry_client::{RegistryClient, SchemaRegistrySettings};
use eventline_registry::{RegistryApp, RegistrySettings};
use eventline_testkit::{eventually, unique, Broker, SqliteDatabase};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value as Json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);
const PARTITIONS: i32 = 3;
const ORDER_PLACED: &str = "com.eventline.commerce.OrderPlaced";

/// A broker, the registry with the catalog's schemas, and a producer, for one test.
struct Stack {
    broker: Broker,
    registry_url: String,
    registry: RegistryClient,
    contracts: Contracts,
    producer: FutureProducer,
    token: CancellationToken,
    _registry_db: SqliteDatabase,
    /// Where `EVENTLINE_DATABASE__URL` points for Kafka-offset groups: a file that does not exist.
    no_database: tempfile::TempDir,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

impl Stack {
    async fn start() -> Self {
        let broker = Broker::shared();
        let registry_db = SqliteDatabase::create();
        let settings = DatabaseSettings { url: registry_db.url().to_owned(), ..DatabaseSettings::default() };
        let database = Database::connect(&settings).await.unwrap();
        let app = RegistryApp::build(RegistrySettings::default(), database, prometheus::Registry::new()).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let registry_url = format!("http://{}", listener.local_addr().unwrap());
        let token = CancellationToken::new();
        tokio::spawn(app.run(listener, token.clone()));
        let registry = RegistryClient::new(&SchemaRegistrySettings {
            url: registry_url.clone(),
            ..SchemaRegistrySettings::default()
        })
        .unwrap();
        let contracts = Contracts::register(Catalog::embedded().unwrap(), &registry).await.unwrap();
        let producer = broker.kafka_settings().client_config().set("enable.idempotence", "true").create().unwrap();
        Self {
            broker,
            registry_url,
            registry,
            contracts,
            producer,
            token,
            _registry_db: registry_db,
            no_database: tempfile::tempdir().unwrap(),
        }
    }

    fn kafka(&self) -> KafkaSettings {
        self.broker.kafka_settings()
    }

    async fn topic(&self) -> String {
        let name = unique("replay");
        self.broker.create_topics(&[(&name, PARTITIONS)]).await;
        name
    }

    /// Publishes an `OrderPlaced` keyed `key` whose `customer_id` carries `value`, to
    /// `partition`; returns its offset.
    async fn order(&self, topic: &str, partition: i32, key: &str, value: &str, timestamp_ms: Option<i64>) -> i64 {
        let mut order = samples::order_placed(key);
        value.clone_into(&mut order.customer_id);
        let (_, bytes) = self.contracts.encode(&order).unwrap();
        let envelope = Envelope {
            id: uuid::Uuid::new_v4(),
            source: "/tests/replay".into(),
            event_type: ORDER_PLACED.into(),
            time: chrono::Utc::now(),
            subject: None,
            traceparent: Some(TraceParent::new_root()),
            correlation_id: None,
        };
        let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(topic)
            .partition(partition)
            .key(key)
            .payload(bytes.as_slice())
            .headers(envelope.to_headers());
        if let Some(timestamp) = timestamp_ms {
            record = record.timestamp(timestamp);
        }
        self.producer.send(record, Duration::from_secs(10)).await.map_err(|(e, _)| e).unwrap().offset
    }

    fn runtime<H: Handler>(&self, settings: ConsumerSettings, handler: H) -> ConsumerRuntime<H> {
        ConsumerRuntime::new(
            settings,
            self.kafka(),
            self.registry.clone(),
            Catalog::embedded().unwrap(),
            handler,
            ConsumerMetrics::registered_in(&prometheus::Registry::new()).unwrap(),
        )
    }

    /// Runs the real binary; `database_url` `None` points at a database that does not exist.
    async fn eventline(&self, args: &[&str], database_url: Option<&str>) -> Run {
        let no_database = format!("sqlite://{}/none.db?mode=rwc", self.no_database.path().display());
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_eventline"))
            .arg("replay")
            .args(args)
            .env("EVENTLINE_KAFKA__BOOTSTRAP_SERVERS", self.broker.bootstrap_servers())
            .env("EVENTLINE_SCHEMA_REGISTRY__URL", &self.registry_url)
            .env("EVENTLINE_DATABASE__URL", database_url.unwrap_or(&no_database))
            .env("RUST_LOG", "warn")
            .kill_on_drop(true)
            .output()
            .await
            .unwrap();
        Run {
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Starts the binary (Kafka-offset groups) in the background.
    fn spawn(&self, args: &[&str]) -> Background {
        use tokio::io::AsyncBufReadExt as _;
        let no_database = format!("sqlite://{}/none.db?mode=rwc", self.no_database.path().display());
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_eventline"))
            .arg("replay")
            .args(args)
            .env("EVENTLINE_KAFKA__BOOTSTRAP_SERVERS", self.broker.bootstrap_servers())
            .env("EVENTLINE_DATABASE__URL", no_database)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        Background { child, lines: tokio::io::BufReader::new(stdout).lines() }
    }

    /// The group's Kafka-committed offsets on `topic` by partition.
    async fn committed(&self, group: &str, topic: &str) -> BTreeMap<i32, Option<i64>> {
        let lag = group_lag(&self.kafka(), group, &[topic.to_owned()], OffsetSource::Kafka).await.unwrap();
        lag.into_iter().map(|p| (p.partition, p.committed)).collect()
    }

    /// What the broker reports about `group`, asked directly: its state (empty when it does not
    /// list the group) and each member's (member id, client id, host).
    async fn broker_group(&self, group: &str) -> (String, Vec<(String, String, String)>) {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let config = self.kafka().client_config();
        let group = group.to_owned();
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = config.create().unwrap();
            let list = consumer.fetch_group_list(Some(&group), Duration::from_secs(10)).unwrap();
            let Some(info) = list.groups().iter().find(|g| g.name() == group) else {
                return (String::new(), Vec::new());
            };
            let members = info
                .members()
                .iter()
                .map(|m| (m.id().to_owned(), m.client_id().to_owned(), m.client_host().to_owned()))
                .collect();
            (info.state().to_owned(), members)
        })
        .await
        .unwrap()
    }

    /// Waits until the broker reports `group` without members (its consumers left).
    async fn left(&self, group: &str) {
        eventually(&format!("the broker reports group {group} empty"), WAIT, || async {
            let (state, members) = self.broker_group(group).await;
            (state == "Empty" && members.is_empty()).then_some(())
        })
        .await;
    }

    /// The end offset of each partition of `topic`.
    async fn ends(&self, topic: &str) -> BTreeMap<i32, i64> {
        let lag = group_lag(&self.kafka(), &unique("ends"), &[topic.to_owned()], OffsetSource::Kafka).await.unwrap();
        lag.into_iter().map(|p| (p.partition, p.end)).collect()
    }
}

/// The binary running in the background (`--wait`), its stdout read line by line.
struct Background {
    child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl Background {
    /// Everything printed up to and including the first line containing `needle`.
    async fn read_until(&mut self, needle: &str) -> String {
        let mut seen = String::new();
        loop {
            let line = tokio::time::timeout(WAIT, self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("no line with `{needle}` within {WAIT:?}; printed:\n{seen}"))
                .unwrap()
                .unwrap_or_else(|| panic!("the output ended before a line with `{needle}`; printed:\n{seen}"));
            seen.push_str(&line);
            seen.push('\n');
            if line.contains(needle) {
                return seen;
            }
        }
    }

    /// Sends SIGINT, as Ctrl-C does.
    async fn interrupt(&self) {
        let pid = self.child.id().unwrap().to_string();
        let status = tokio::process::Command::new("kill").args(["-INT", &pid]).status().await.unwrap();
        assert!(status.success());
    }

    async fn exits_successfully(mut self) {
        let status = tokio::time::timeout(WAIT, self.child.wait()).await.expect("the command did not exit").unwrap();
        assert!(status.success(), "exit status {status}");
    }
}

#[derive(Debug)]
struct Run {
    success: bool,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(self) -> Self {
        assert!(self.success, "eventline replay failed:\n{}\n{}", self.stdout, self.stderr);
        self
    }

    fn json(&self) -> Json {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", self.stdout))
    }
}

/// Test consumer settings: a unique group, quick batches and commits.
fn settings(group: &str, topic: &str, mode: OffsetMode) -> ConsumerSettings {
    let mut settings = ConsumerSettings::new(group, [topic]);
    settings.event_types = vec!["OrderPlaced".into()];
    settings.batch_linger = Duration::from_millis(10);
    settings.commit_interval = Duration::from_millis(200);
    settings.lag_report_interval = Duration::from_millis(500);
    settings.offset_mode = mode;
    settings
}

/// A consumer running in a task.
struct Running {
    token: CancellationToken,
    task: JoinHandle<Result<(), ConsumerError>>,
}

impl Running {
    fn start<H: Handler>(runtime: ConsumerRuntime<H>) -> Self {
        let token = CancellationToken::new();
        let task = tokio::spawn(runtime.run(token.clone()));
        Self { token, task }
    }

    async fn stop(self) {
        self.token.cancel();
        tokio::time::timeout(WAIT, self.task).await.expect("the consumer did not stop").unwrap().unwrap();
    }
}

/// A read model: one row per key holding the latest event's value (idempotent: replaying any
/// suffix of a key's events in order ends in the same row).
#[derive(Clone)]
struct ReadModel {
    db: Database,
}

impl ReadModel {
    async fn create(url: &str) -> Self {
        let db =
            Database::connect(&DatabaseSettings { url: url.to_owned(), ..DatabaseSettings::default() }).await.unwrap();
        sqlx::query("CREATE TABLE read_model (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            .execute(db.pool())
            .await
            .unwrap();
        Self { db }
    }

    async fn rows(&self) -> BTreeMap<String, String> {
        use sqlx::Row as _;
        let rows = sqlx::query("SELECT key, value FROM read_model").fetch_all(self.db.pool()).await.unwrap();
        rows.iter().map(|r| (r.get::<String, _>(0), r.get::<String, _>(1))).collect()
    }

    async fn execute(&self, sql: &str) {
        sqlx::query(sql).execute(self.db.pool()).await.unwrap();
    }
}

impl Handler for ReadModel {
    async fn handle(&self, batch: &Batch) -> Result<(), HandlerError> {
        for event in batch {
            let order: OrderPlaced = event.event()?;
            sqlx::query(
                "INSERT INTO read_model (key, value) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .bind(&order.order_id)
            .bind(&order.customer_id)
            .execute(self.db.pool())
            .await
            .map_err(HandlerError::retryable)?;
        }
        Ok(())
    }
}

/// (partition, offset, record timestamp in ms) of every event handled.
type Seen = Arc<Mutex<Vec<(i32, i64, i64)>>>;

/// Records what it handles; with a store, saves the batch's offsets (the transactional mode).
#[derive(Clone)]
struct Recorder {
    seen: Seen,
    store: Option<OffsetStore>,
}

impl Recorder {
    fn new(store: Option<OffsetStore>) -> Self {
        Self { seen: Seen::default(), store }
    }

    fn seen(&self) -> Vec<(i32, i64, i64)> {
        self.seen.lock().unwrap().clone()
    }

    fn offsets(&self) -> BTreeSet<(i32, i64)> {
        self.seen().into_iter().map(|(p, o, _)| (p, o)).collect()
    }

    fn forget(&self) {
        self.seen.lock().unwrap().clear();
    }
}

impl Handler for Recorder {
    async fn handle(&self, batch: &Batch) -> Result<(), HandlerError> {
        if let Some(store) = &self.store {
            let mut tx = store.database().pool().begin().await.map_err(HandlerError::retryable)?;
            OffsetStore::save(&mut tx, batch.group(), batch.positions()).await.map_err(HandlerError::retryable)?;
            tx.commit().await.map_err(HandlerError::retryable)?;
        }
        let mut seen = self.seen.lock().unwrap();
        for event in batch {
            let timestamp = event.timestamp.expect("records carry a timestamp").timestamp_millis();
            seen.push((event.partition, event.offset, timestamp));
        }
        Ok(())
    }
}

/// Waits until `recorder` has handled `count` events.
async fn handled(recorder: &Recorder, count: usize) {
    eventually(&format!("{count} events handled"), WAIT, || async {
        let seen = recorder.seen().len();
        assert!(seen <= count, "handled {seen} events, more than the {count} expected: {:?}", recorder.seen());
        (seen == count).then_some(())
    })
    .await;
}

/// `field` by partition, of the plan's partitions of `topic` (the group's retry topic is in
/// the plan too).
fn as_map(json: &Json, topic: &str, field: &str) -> BTreeMap<i32, i64> {
    json.as_array()
        .unwrap()
        .iter()
        .filter(|p| p["topic"] == topic)
        .map(|p| (i32::try_from(p["partition"].as_i64().unwrap()).unwrap(), p[field].as_i64().unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replay_to_earliest_repairs_a_damaged_read_model() {
    let stack = Stack::start().await;
    let topic = stack.topic().await;
    let mut expected = BTreeMap::new();
    for round in 0..4 {
        for k in 0..6 {
            let (key, value) = (format!("key-{k}"), format!("value-{k}-{round}"));
            stack.order(&topic, k % PARTITIONS, &key, &value, None).await;
            expected.insert(key, value);
        }
    }
    let db_file = SqliteDatabase::create();
    let model = ReadModel::create(db_file.url()).await;
    let group = unique("read-model");
    let consumer = Running::start(stack.runtime(settings(&group, &topic, OffsetMode::Kafka), model.clone()));
    eventually("the read model is complete", WAIT, || async { (model.rows().await == expected).then_some(()) }).await;
    consumer.stop().await;
    stack.left(&group).await;
    let ends = stack.ends(&topic).await;
    let at_end: BTreeMap<i32, Option<i64>> = ends.iter().map(|(p, e)| (*p, Some(*e))).collect();
    assert_eq!(stack.committed(&group, &topic).await, at_end);

    model.execute("DELETE FROM read_model WHERE key IN ('key-0', 'key-4')").await;
    model.execute("UPDATE read_model SET value = 'garbage' WHERE key = 'key-2'").await;
    assert_ne!(model.rows().await, expected);

    let dry = stack.eventline(&["--group", &group, "--to-earliest"], None).await.ok();
    assert!(dry.stdout.contains("dry run: nothing changed; add --execute to apply"), "{}", dry.stdout);
    assert!(dry.stdout.contains("offsets live in Kafka"), "{}", dry.stdout);
    assert!(dry.stdout.contains("24 event(s) to re-read, 0 to skip"), "{}", dry.stdout);
    assert_eq!(stack.committed(&group, &topic).await, at_end, "a dry run changes nothing");

    let mut waiting = stack.spawn(&["--group", &group, "--to-earliest", "--execute", "--wait"]);
    let executed = waiting.read_until("partition(s) now at their targets").await;
    assert!(executed.contains("executed: offsets written to Kafka"), "{executed}");
    let at_start: BTreeMap<i32, Option<i64>> = ends.keys().map(|p| (*p, Some(0))).collect();
    assert_eq!(stack.committed(&group, &topic).await, at_start);

    let consumer = Running::start(stack.runtime(settings(&group, &topic, OffsetMode::Kafka), model.clone()));
    let followed = waiting.read_until("caught up: the group reached the log ends recorded in the plan").await;
    assert!(followed.contains("re-read 24 of 24 events"), "--wait reports progress:\n{followed}");
    waiting.exits_successfully().await;
    assert_eq!(stack.committed(&group, &topic).await, at_end);
    consumer.stop().await;
    assert_eq!(model.rows().await, expected, "the read model equals the log's state exactly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replay_to_a_date_time_rereads_exactly_the_events_after_it() {
    let stack = Stack::start().await;
    let topic = stack.topic().await;
    let group = unique("recorder");
    let recorder = Recorder::new(None);
    let mut first_wave = 0;
    for partition in 0..PARTITIONS {
        for i in 0..3 {
            stack.order(&topic, partition, &format!("k{partition}"), &format!("w1-{i}"), None).await;
            first_wave += 1;
        }
    }
    let consumer = Running::start(stack.runtime(settings(&group, &topic, OffsetMode::Kafka), recorder.clone()));
    handled(&recorder, first_wave).await;
    // The second wave is stamped after the last timestamp read back from the first.
    let boundary_ms = recorder.seen().iter().map(|(_, _, t)| *t).max().unwrap() + 1;
    let mut second_wave = BTreeSet::new();
    for (partition, count) in [(0, 1), (1, 3)] {
        for i in 0..count {
            let offset =
                stack.order(&topic, partition, &format!("k{partition}"), &format!("w2-{i}"), Some(boundary_ms)).await;
            second_wave.insert((partition, offset));
        }
    }
    handled(&recorder, first_wave + second_wave.len()).await;
    consumer.stop().await;
    stack.left(&group).await;
    let read_back_boundary =
        recorder.seen().iter().filter(|(p, o, _)| second_wave.contains(&(*p, *o))).map(|(_, _, t)| *t).min().unwrap();
    assert!(recorder.seen().iter().all(|(p, o, t)| second_wave.contains(&(*p, *o)) || *t < read_back_boundary));
    let boundary = chrono::DateTime::from_timestamp_millis(read_back_boundary)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);

    let run = stack
        .eventline(&["--group", &group, "--to-datetime", &boundary, "--execute", "--output", "json"], None)
        .await
        .ok();
    let report = run.json();
    assert_eq!(report["dry_run"], false);
    let plan = &report["plan"];
    assert_eq!(plan["offsets_in"], "kafka");
    let planned_rereads = as_map(&plan["partitions"], &topic, "to_reread");
    assert_eq!(planned_rereads, BTreeMap::from([(0, 1), (1, 3), (2, 0)]), "{plan:#}");
    assert_eq!(plan["totals"]["to_reread"], 4);
    assert_eq!(report["outcome"]["verified"], true);

    recorder.forget();
    let consumer = Running::start(stack.runtime(settings(&group, &topic, OffsetMode::Kafka), recorder.clone()));
    handled(&recorder, second_wave.len()).await;
    let ends = stack.ends(&topic).await;
    eventually("the group is back at the end", WAIT, || async {
        let committed = stack.committed(&group, &topic).await;
        ends.iter().all(|(p, e)| committed.get(p) == Some(&Some(*e))).then_some(())
    })
    .await;
    consumer.stop().await;
    assert_eq!(recorder.offsets(), second_wave, "exactly the second wave was re-read");
    let mut reread_per_partition: BTreeMap<i32, i64> = (0..PARTITIONS).map(|p| (p, 0)).collect();
    for (partition, _) in recorder.offsets() {
        *reread_per_partition.entry(partition).or_default() += 1;
    }
    assert_eq!(reread_per_partition, planned_rereads, "the plan's counts are what was re-read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replay_shift_by_moves_each_partition_by_exactly_n() {
    let stack = Stack::start().await;
    let topic = stack.topic().await;
    let group = unique("recorder");
    let recorder = Recorder::new(None);
    let mut total = 0;
    for (partition, count) in [(0, 5), (1, 4), (2, 3)] {
        for i in 0..count {
            stack.order(&topic, partition, &format!("k{partition}"), &format!("v{i}"), None).await;
            total += 1;
        }
    }
    let consumer = Running::start(stack.runtime(settings(&group, &topic, OffsetMode::Kafka), recorder.clone()));
    handled(&recorder, total).await;
    consumer.stop().await;
    stack.left(&group).await;
    let ends = stack.ends(&topic).await;
    let before = stack.committed(&group, &topic).await;
    assert_eq!(before, ends.iter().map(|(p, e)| (*p, Some(*e))).collect());

    let clamped = stack.eventline(&["--group", &group, "--shift-by", "-4", "--output", "json"], None).await.ok();
    let plan = clamped.json()["plan"].clone();
    assert_eq!(as_map(&plan["partitions"], &topic, "target"), BTreeMap::from([(0, 1), (1, 0), (2, 0)]));
    assert_eq!(as_map(&plan["partitions"], &topic, "to_reread"), BTreeMap::from([(0, 4), (1, 4), (2, 3)]));
    let partitions = plan["partitions"].as_array().unwrap().iter().filter(|p| p["topic"] == topic.as_str());
    let clamps: Vec<&Json> = partitions.map(|p| &p["clamped_from"]).collect();
    assert_eq!(clamps, [&Json::Null, &Json::Null, &serde_json::json!(-1)], "only partition 2 is clamped");
    let text = stack.eventline(&["--group", &group, "--shift-by", "-4"], None).await.ok();
    assert!(
        text.stdout
            .contains(&format!("clamped: {topic} partition 2: the shift asked for offset -1; set to the log start, 0")),
        "{}",
        text.stdout
    );
    assert_eq!(stack.committed(&group, &topic).await, before, "dry runs change nothing");

    let mut waiting = stack.spawn(&["--group", &group, "--shift-by", "-2", "--execute", "--wait"]);
    waiting.read_until("partition(s) now at their targets").await;
    let shifted: BTreeMap<i32, Option<i64>> = ends.iter().map(|(p, e)| (*p, Some(e - 2))).collect();
    assert_eq!(stack.committed(&group, &topic).await, shifted);
    waiting.read_until("re-read 0 of 6 events").await;
    waiting.interrupt().await;
    let stopped = waiting.read_until("stopped waiting (Ctrl-C); the reset is done").await;
    assert!(!stopped.contains("caught up"), "{stopped}");
    waiting.exits_successfully().await;
    assert_eq!(stack.committed(&group, &topic).await, shifted, "Ctrl-C stops the waiting only");

    recorder.forget();
    let consumer = Running::start(stack.runtime(settings(&group, &topic, OffsetMode::Kafka), recorder.clone()));
    handled(&recorder, 6).await;
    eventually("the group is back at the end", WAIT, || async {
        let committed = stack.committed(&group, &topic).await;
        ends.iter().all(|(p, e)| committed.get(p) == Some(&Some(*e))).then_some(())
    })
    .await;
    consumer.stop().await;
    let expected: BTreeSet<(i32, i64)> = ends.iter().flat_map(|(p, e)| [(*p, e - 2), (*p, e - 1)]).collect();
    assert_eq!(recorder.offsets(), expected, "the last two events of each partition, once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_offset_group_is_reset_in_the_store_and_never_under_a_live_member() {
    let stack = Stack::start().await;
    let topic = stack.topic().await;
    for partition in 0..PARTITIONS {
        for i in 0..2 {
            stack.order(&topic, partition, &format!("k{partition}"), &format!("v{i}"), None).await;
        }
    }
    let db_file = SqliteDatabase::create();
    let db = Database::connect(&DatabaseSettings { url: db_file.url().to_owned(), ..DatabaseSettings::default() })
        .await
        .unwrap();
    let store = OffsetStore::new(db.clone());
    store.migrate().await.unwrap();
    let members = MemberRegistry::new(db.clone());
    let group = unique("transactional");
    let stored = || async {
        let offsets = store.list(&group).await.unwrap();
        offsets
            .into_iter()
            .filter(|o| o.topic == topic)
            .map(|o| (o.partition, o.next_offset))
            .collect::<BTreeMap<i32, i64>>()
    };
    let recorder = Recorder::new(Some(store.clone()));
    let consumer = Running::start(
        stack
            .runtime(settings(&group, &topic, OffsetMode::Transactional), recorder.clone())
            .with_offset_store(store.clone()),
    );
    handled(&recorder, 6).await;
    let at_end: BTreeMap<i32, i64> = (0..PARTITIONS).map(|p| (p, 2)).collect();
    eventually("the offsets are stored", WAIT, || async { (stored().await == at_end).then_some(()) }).await;
    let live = members.all(&group).await.unwrap();
    assert_eq!(live.len(), 1, "the running consumer has a heartbeat row: {live:?}");
    assert_eq!(live[0].pid, i64::from(std::process::id()));

    let refused = stack.eventline(&["--group", &group, "--to-earliest", "--execute"], Some(db_file.url())).await;
    assert!(!refused.success, "{}", refused.stdout);
    assert!(refused.stderr.contains(&format!("consumer group `{group}` has live members")), "{}", refused.stderr);
    assert!(
        refused.stderr.contains(&format!("{} on {} (pid {}", live[0].member_id, live[0].host, live[0].pid)),
        "{}",
        refused.stderr
    );
    assert!(refused.stderr.contains("stop the group's consumers"), "{}", refused.stderr);
    let stopped_said = stack
        .eventline(&["--group", &group, "--to-earliest", "--execute", "--members-stopped"], Some(db_file.url()))
        .await;
    assert!(!stopped_said.success, "members that are seen are never overridden: {}", stopped_said.stdout);
    assert_eq!(stored().await, at_end, "refusals change nothing");

    consumer.stop().await;
    assert!(members.all(&group).await.unwrap().is_empty(), "a clean stop deregisters");
    // A member killed without deregistering ages out.
    let mut dead = Member::of_this_process(&group, chrono::Utc::now().timestamp_millis() - 60_000);
    dead.host = "killed-host".into();
    members.register(&dead).await.unwrap();

    let dry = stack.eventline(&["--group", &group, "--to-earliest"], Some(db_file.url())).await.ok();
    assert!(dry.stdout.contains("offsets live in the database"), "{}", dry.stdout);
    assert!(dry.stdout.contains("members: none live"), "{}", dry.stdout);
    assert!(dry.stdout.contains("dropped by their event id"), "{}", dry.stdout);
    assert_eq!(stored().await, at_end, "a dry run changes nothing");

    let run = stack
        .eventline(&["--group", &group, "--to-earliest", "--execute", "--output", "json"], Some(db_file.url()))
        .await
        .ok();
    let report = run.json();
    assert_eq!(report["plan"]["offsets_in"], "database");
    assert_eq!(report["outcome"]["verified"], true);
    assert_eq!(report["outcome"]["kafka_copy"], "committed");
    let at_start: BTreeMap<i32, i64> = (0..PARTITIONS).map(|p| (p, 0)).collect();
    assert_eq!(stored().await, at_start, "the reset landed in the offset store");
    let copy = stack.committed(&group, &topic).await;
    assert_eq!(copy, at_start.iter().map(|(p, o)| (*p, Some(*o))).collect(), "and in Kafka as the trailing copy");

    recorder.forget();
    let consumer = Running::start(
        stack
            .runtime(settings(&group, &topic, OffsetMode::Transactional), recorder.clone())
            .with_offset_store(store.clone()),
    );
    handled(&recorder, 6).await;
    eventually("the offsets are back at the end", WAIT, || async { (stored().await == at_end).then_some(()) }).await;
    consumer.stop().await;
}

/// Commits `offsets` (partition, next offset) on `topic` for `group` from outside the group.
async fn commit(kafka: &KafkaSettings, group: &str, topic: &str, offsets: &[(i32, i64)]) {
    try_commit(kafka, group, topic, offsets).await.unwrap_or_else(|e| panic!("commit for {group}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_is_refused_with_a_clear_message_and_changes_nothing() {
    let stack = Stack::start().await;
    let topic = stack.topic().await;
    for partition in 0..PARTITIONS {
        stack.order(&topic, partition, "k", "v", None).await;
        stack.order(&topic, partition, "k", "v", None).await;
    }
    let group = unique("bad-input");
    commit(&stack.kafka(), &group, &topic, &[(0, 1), (1, 2), (2, 0)]).await;
    let before = stack.committed(&group, &topic).await;
    assert_eq!(before, BTreeMap::from([(0, Some(1)), (1, Some(2)), (2, Some(0))]));

    let partition_9 = format!("{topic}:9");
    let partition_0 = format!("{topic}:0");
    let bad_selection = format!("{topic}:x");
    let cases: Vec<(Vec<&str>, String)> = vec![
        (vec!["--group", "no-such-group", "--to-earliest"], "consumer group `no-such-group` is unknown".into()),
        (
            vec!["--group", &group, "--topic", "no-such-topic", "--to-earliest"],
            "topic `no-such-topic` does not exist".into(),
        ),
        (
            vec!["--group", &group, "--topic", &partition_9, "--to-earliest"],
            format!("topic `{topic}` has no partition 9 (it has partitions 0 to 2)"),
        ),
        (vec!["--group", &group, "--topic", &bad_selection, "--to-earliest"], "is not a topic selection".into()),
        (
            vec!["--group", &group, "--to-datetime", "yesterday"],
            "`yesterday` is not a date-time: expected RFC 3339".into(),
        ),
        (
            vec!["--group", &group, "--topic", &partition_0, "--to-offset", "3"],
            format!("offset 3 is outside {topic} partition 0: its log starts at 0 and ends at 2"),
        ),
        (vec!["--group", &group, "--to-offset", "-1"], format!("offset -1 is outside {topic} partition 0")),
        (vec!["--group", &group], "required arguments were not provided".into()),
        (vec!["--group", &group, "--to-earliest", "--to-latest"], "cannot be used with".into()),
        (vec!["--group", "", "--to-earliest"], "the consumer group name is empty".into()),
    ];
    for (args, expected) in cases {
        let mut args = args.clone();
        args.push("--execute");
        let run = stack.eventline(&args, None).await;
        assert!(!run.success, "{args:?} succeeded:\n{}", run.stdout);
        assert!(run.stderr.contains(&expected), "{args:?}: expected `{expected}` in:\n{}", run.stderr);
    }
    let wait_without_execute = stack.eventline(&["--group", &group, "--to-earliest", "--wait"], None).await;
    assert!(!wait_without_execute.success);
    assert!(wait_without_execute.stderr.contains("--execute"), "{}", wait_without_execute.stderr);
    assert_eq!(stack.committed(&group, &topic).await, before, "nothing changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kafka_offset_group_is_never_reset_while_the_broker_reports_a_live_member() {
    let stack = Stack::start().await;
    let topic = stack.topic().await;
    for partition in 0..PARTITIONS {
        for i in 0..2 {
            stack.order(&topic, partition, &format!("k{partition}"), &format!("v{i}"), None).await;
        }
    }
    let group = unique("live");
    let recorder = Recorder::new(None);
    let consumer = Running::start(stack.runtime(settings(&group, &topic, OffsetMode::Kafka), recorder.clone()));
    handled(&recorder, 6).await;
    let at_end: BTreeMap<i32, Option<i64>> = (0..PARTITIONS).map(|p| (p, Some(2))).collect();
    eventually("the offsets are committed", WAIT, || async {
        (stack.committed(&group, &topic).await == at_end).then_some(())
    })
    .await;
    let (member_id, client_id, host) = eventually("the broker reports the consumer", WAIT, || async {
        let (state, mut members) = stack.broker_group(&group).await;
        (state == "Stable" && members.len() == 1).then(|| members.remove(0))
    })
    .await;
    let named = format!("{member_id} on {host} (client {client_id})");

    let refused = stack.eventline(&["--group", &group, "--to-earliest", "--execute"], None).await;
    assert!(!refused.success, "{}", refused.stdout);
    let expected = format!("consumer group `{group}` has live members: {named}; stop the group's consumers");
    assert!(refused.stderr.contains(&expected), "expected `{expected}` in:\n{}", refused.stderr);
    let said_stopped =
        stack.eventline(&["--group", &group, "--to-earliest", "--execute", "--members-stopped"], None).await;
    assert!(!said_stopped.success, "members the broker reports are never overridden: {}", said_stopped.stdout);
    assert!(said_stopped.stderr.contains(&expected), "{}", said_stopped.stderr);
    let dry = stack.eventline(&["--group", &group, "--to-earliest"], None).await.ok();
    let live_line =
        format!("members: LIVE: {named} (the broker's DescribeGroups says the group is Stable); --execute is refused");
    assert!(dry.stdout.contains(&live_line), "{}", dry.stdout);
    assert_eq!(stack.committed(&group, &topic).await, at_end, "refusals change nothing");

    consumer.stop().await;
    stack.left(&group).await;
    let run = stack.eventline(&["--group", &group, "--to-earliest", "--execute", "--output", "json"], None).await.ok();
    let members = &run.json()["outcome"]["members"];
    assert_eq!(
        (&members["source"], &members["status"], &members["members"]),
        (&Json::from("broker"), &Json::from("none_live"), &serde_json::json!([])),
        "{members:#}"
    );
    assert_eq!(members["detail"], "the broker's DescribeGroups says the group is Empty");
    assert_eq!(run.json()["outcome"]["verified"], true);
    let at_start: BTreeMap<i32, Option<i64>> = (0..PARTITIONS).map(|p| (p, Some(0))).collect();
    assert_eq!(stack.committed(&group, &topic).await, at_start);
}

/// Commits `offsets` on `topic` for `group` from outside the group; Kafka accepts that only while
/// the group has no members.
async fn try_commit(kafka: &KafkaSettings, group: &str, topic: &str, offsets: &[(i32, i64)]) -> Result<(), String> {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    let config = {
        let mut config = kafka.client_config();
        config.set("group.id", group).set("enable.auto.commit", "false");
        config
    };
    let mut list = rdkafka::TopicPartitionList::new();
    for (partition, offset) in offsets {
        list.add_partition_offset(topic, *partition, rdkafka::Offset::Offset(*offset)).unwrap();
    }
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config.create().unwrap();
        consumer.commit(&list, CommitMode::Sync).map_err(|e| e.to_string())
    })
    .await
    .unwrap()
}

/// Kafka 4's DescribeGroups describes a group of the new consumer protocol (KIP-848) as `Dead`
/// without members, live or not: replay must not take that for an empty group.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_group_of_the_new_consumer_protocol_is_reset_only_on_the_operators_word() {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    use std::sync::atomic::{AtomicBool, Ordering};
    let stack = Stack::start().await;
    let topic = stack.topic().await;
    for partition in 0..PARTITIONS {
        stack.order(&topic, partition, "k", "v", None).await;
    }
    let group = unique("kip848");
    let consumer: BaseConsumer = stack
        .kafka()
        .client_config()
        .set("group.id", &group)
        .set("group.protocol", "consumer")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    // Reads the three records, commits, and stays in the group until told to stop.
    let member = std::thread::spawn(move || {
        let mut read = 0;
        while !stopping.load(Ordering::Relaxed) {
            if let Some(Ok(_record)) = consumer.poll(Duration::from_millis(100)) {
                read += 1;
                if read == PARTITIONS {
                    consumer.commit_consumer_state(CommitMode::Sync).unwrap();
                }
            }
        }
    });
    let at_end: BTreeMap<i32, Option<i64>> = (0..PARTITIONS).map(|p| (p, Some(1))).collect();
    eventually("the member committed", WAIT, || async {
        let lag = group_lag(&stack.kafka(), &group, std::slice::from_ref(&topic), OffsetSource::Kafka).await.ok()?;
        let committed: BTreeMap<i32, Option<i64>> = lag.into_iter().map(|p| (p.partition, p.committed)).collect();
        (committed == at_end).then_some(())
    })
    .await;
    assert_eq!(stack.broker_group(&group).await, ("Dead".to_owned(), Vec::new()), "what Kafka says of a live group");

    let unsure =
        format!("the broker cannot tell whether group `{group}` has live members (DescribeGroups answered `Dead`");
    let refused = stack.eventline(&["--group", &group, "--to-earliest", "--execute"], None).await;
    assert!(!refused.success, "{}", refused.stdout);
    assert!(
        refused.stderr.contains(&unsure) && refused.stderr.contains("pass --members-stopped"),
        "{}",
        refused.stderr
    );
    // The operator's word is wrong while the member runs: Kafka itself refuses the commit.
    let wrong_word =
        stack.eventline(&["--group", &group, "--to-earliest", "--execute", "--members-stopped"], None).await;
    assert!(!wrong_word.success, "{}", wrong_word.stdout);
    assert!(wrong_word.stderr.contains("Unknown member"), "{}", wrong_word.stderr);
    assert_eq!(stack.committed(&group, &topic).await, at_end, "refusals change nothing");

    stop.store(true, Ordering::Relaxed);
    member.join().unwrap();
    let same: Vec<(i32, i64)> = (0..PARTITIONS).map(|p| (p, 1)).collect();
    eventually("Kafka accepts commits from outside the group (it has no members)", WAIT, || async {
        try_commit(&stack.kafka(), &group, &topic, &same).await.ok()
    })
    .await;
    let still_unsure = stack.eventline(&["--group", &group, "--to-earliest", "--execute"], None).await;
    assert!(!still_unsure.success && still_unsure.stderr.contains(&unsure), "{}", still_unsure.stderr);
    let run = stack
        .eventline(&["--group", &group, "--to-earliest", "--execute", "--members-stopped", "--output", "json"], None)
        .await
        .ok();
    let report = run.json();
    assert_eq!(
        (&report["outcome"]["members"]["status"], &report["outcome"]["verified"]),
        (&Json::from("unknown"), &Json::from(true))
    );
    let at_start: BTreeMap<i32, Option<i64>> = (0..PARTITIONS).map(|p| (p, Some(0))).collect();
    assert_eq!(stack.committed(&group, &topic).await, at_start);
}
