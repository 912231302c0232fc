//! `eventline rebuild projector` as an operator runs it: the real binary against a database the
//! projector filled (a running projector, a real Apache Kafka broker, the Eventline registry, SQLite).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use eventline_common::catalog::Catalog;
use eventline_common::contracts::Contracts;
use eventline_common::db::{Database, DatabaseSettings};
use eventline_common::kafka::consumer::{OffsetStore, PartitionOffset};
use eventline_common::kafka::producer::{EventProducer, ProducerSettings};
use eventline_common::kafka::Position;
use eventline_common::publish::{prepare, Origin, Publisher};
use eventline_common::registry_client::{RegistryClient, SchemaRegistrySettings};
use eventline_common::service::{self, Platform};
use eventline_projector::{ProjectorService, ProjectorSettings};
use eventline_registry::{RegistryApp, RegistrySettings};
use eventline_testkit::{eventually, unique, Broker, SqliteDatabase};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(60);
const CUSTOMERS: usize = 20;

/// A broker with the catalog's topics, the registry, a SQLite database and a projector (its own
/// group) running over it, which has applied every event published.
struct Stack {
    broker: Broker,
    registry_url: String,
    database: SqliteDatabase,
    group: String,
    token: CancellationToken,
    projector: tokio::task::JoinHandle<anyhow::Result<()>>,
    published: usize,
}

async fn stack_with_a_projected_database() -> Stack {
    let broker = Broker::start().await;
    let catalog = Catalog::embedded().unwrap();
    let topics: Vec<(&str, i32)> = catalog.topics().iter().map(|t| (t.name.as_str(), t.partitions)).collect();
    broker.create_topics(&topics).await;
    let token = CancellationToken::new();

    let registry_db = SqliteDatabase::create();
    let settings = DatabaseSettings { url: registry_db.url().to_owned(), ..DatabaseSettings::default() };
    let registry = RegistryApp::build(
        RegistrySettings::default(),
        Database::connect(&settings).await.unwrap(),
        prometheus::Registry::new(),
    )
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let registry_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _keep = registry_db;
        registry.run(listener, CancellationToken::new()).await
    });
    let client =
        RegistryClient::new(&SchemaRegistrySettings { url: registry_url.clone(), ..SchemaRegistrySettings::default() })
            .unwrap();
    let contracts = Arc::new(Contracts::register(catalog.clone(), &client).await.unwrap());

    let database = SqliteDatabase::create();
    let db = Database::connect(&DatabaseSettings { url: database.url().to_owned(), ..DatabaseSettings::default() })
        .await
        .unwrap();
    let group = unique("projector");
    let mut settings = ProjectorSettings::default();
    settings.consumer.group_id = group.clone();
    settings.listen = "127.0.0.1:0".into();
    let platform = Platform {
        kafka: broker.kafka_settings(),
        db,
        registry_client: client,
        catalog,
        metrics: prometheus::Registry::new(),
    };
    let app = service::prepare::<ProjectorService>(platform, settings).await.unwrap();
    let store = app.service().store().clone();
    let projector = tokio::spawn(app.run(token.clone()));

    let publisher = Publisher::new(
        EventProducer::new(&broker.kafka_settings(), &ProducerSettings::default()).unwrap(),
        contracts.clone(),
    );
    let origin = Origin { source: "/tests/rebuild".into(), traceparent: None, correlation_id: None };
    let mut events = Vec::new();
    for n in 0..CUSTOMERS {
        let at = "2026-01-01T00:00:00Z";
        events.push(json!({"type": "CustomerRegistered", "data": {
            "customer_id": format!("c{n}"), "email": format!("c{n}@example.com"), "name": "C", "registered_at": at}}));
        events.push(json!({"type": "OrderPlaced", "data": {
            "order_id": format!("o{n}"), "customer_id": format!("c{n}"), "currency": "EUR", "total_minor": 100,
            "lines": [{"sku": "s", "quantity": 1, "unit_price_minor": 100}], "placed_at": at}}));
    }
    let mut last: BTreeMap<(String, i32), Position> = BTreeMap::new();
    for event in &events {
        let position = publisher.publish(&prepare(&contracts, event, &origin).unwrap()).await.unwrap();
        last.insert((position.topic.clone(), position.partition), position);
    }
    eventually("the projector to apply every event", WAIT, || async {
        for position in last.values() {
            if !store.has_passed(&group, position).await.unwrap() {
                return None;
            }
        }
        Some(())
    })
    .await;
    Stack { broker, registry_url, database, group, token, projector, published: events.len() }
}

impl Stack {
    async fn eventline(&self, args: &[&str]) -> Output {
        eventline_with(&self.broker.bootstrap_servers(), &self.registry_url, self.database.url(), &self.group, args)
            .await
    }

    async fn stop(self) {
        self.token.cancel();
        tokio::time::timeout(WAIT, self.projector).await.unwrap().unwrap().unwrap();
    }
}

struct Output {
    success: bool,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "success: {}\nstdout:\n{}\nstderr:\n{}", self.success, self.stdout, self.stderr)
    }
}

async fn eventline_with(bootstrap: &str, registry: &str, database: &str, group: &str, args: &[&str]) -> Output {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_eventline"))
        .args(args)
        .env("EVENTLINE_KAFKA__BOOTSTRAP_SERVERS", bootstrap)
        .env("EVENTLINE_SCHEMA_REGISTRY__URL", registry)
        .env("EVENTLINE_DATABASE__URL", database)
        .env("EVENTLINE_CONSUMERS__PROJECTOR__CONSUMER__GROUP_ID", group)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(WAIT, output).await.expect("eventline did not finish").unwrap();
    Output {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// (generation, state, applied events) from `--status --output json`.
async fn status(stack: &Stack) -> (i64, Vec<(i64, String, Option<i64>)>) {
    let out = stack.eventline(&["rebuild", "projector", "--status", "--output", "json"]).await;
    assert!(out.success, "{out}");
    let json: Value = serde_json::from_str(&out.stdout).unwrap();
    let generations = json["generations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (g["generation"].as_i64().unwrap(), g["state"].as_str().unwrap().to_owned(), g["applied_events"].as_i64())
        })
        .collect();
    (json["active"].as_i64().unwrap(), generations)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_swaps_in_a_new_generation_and_rollback_returns_to_the_old_one() {
    let stack = stack_with_a_projected_database().await;
    let all = Some(stack.published as i64);

    let out = stack.eventline(&["rebuild", "projector"]).await;
    assert!(out.success, "{out}");
    assert!(out.stderr.contains("building generation 2 (tables projector_g2_*"), "{out}");
    assert!(out.stderr.contains("generation 1 keeps serving"), "{out}");
    assert!(
        out.stderr.lines().any(|l| l.starts_with("generation 2: ") && l.contains("events applied, lag")),
        "a progress line: {out}"
    );
    assert!(out.stdout.contains(&format!("generation 2 is active: {} events applied", stack.published)), "{out}");
    assert!(out.stdout.contains("generation 1 is kept as previous"), "{out}");
    assert_eq!(
        status(&stack).await,
        (2, vec![(1, "previous".into(), all), (2, "active".into(), all)]),
        "both generations hold every event"
    );

    let out = stack.eventline(&["rebuild", "projector", "--rollback"]).await;
    assert!(out.success, "{out}");
    assert!(out.stdout.contains("generation 1 is active again"), "{out}");
    assert_eq!(status(&stack).await.0, 1);

    // A second rebuild retires the generation that was previous (2) and drops its tables.
    let out = stack.eventline(&["rebuild", "projector", "--output", "json"]).await;
    assert!(out.success, "{out}");
    let summary: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(summary["outcome"], "swapped", "{out}");
    assert_eq!((summary["generation"].as_i64(), summary["serving"].as_i64()), (Some(3), Some(1)), "{out}");
    assert_eq!(summary["retired"], json!([2]), "{out}");
    let progress: Vec<Value> = out.stderr.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert!(progress.iter().any(|e| e["event"] == "progress" && e["lag"].is_i64()), "{out}");
    assert_eq!(
        status(&stack).await,
        (3, vec![(1, "previous".into(), all), (2, "retired".into(), None), (3, "active".into(), all)])
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_a_clear_message_and_changes_nothing() {
    let stack = stack_with_a_projected_database().await;

    let out = stack.eventline(&["rebuild", "nothing"]).await;
    assert!(!out.success, "{out}");
    assert!(out.stderr.contains("invalid value 'nothing'") && out.stderr.contains("projector"), "{out}");

    let out = stack.eventline(&["rebuild", "projector", "--rollback"]).await;
    assert!(!out.success, "{out}");
    assert!(out.stderr.contains("no previous generation to roll back to"), "{out}");

    let out = stack.eventline(&["rebuild", "projector", "--rollback", "--status"]).await;
    assert!(!out.success, "{out}");
    assert!(out.stderr.contains("cannot be used with"), "{out}");

    let missing = format!("sqlite:///tmp/{}/nothing.db?mode=rwc", unique("no-such-dir"));
    let out = eventline_with(
        &stack.broker.bootstrap_servers(),
        &stack.registry_url,
        &missing,
        &stack.group,
        &["rebuild", "projector"],
    )
    .await;
    assert!(!out.success, "{out}");
    assert!(out.stderr.contains("no database at"), "{out}");

    assert_eq!(status(&stack).await, (1, vec![(1, "active".into(), Some(stack.published as i64))]));
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_the_build_leaves_the_active_generation_untouched() {
    let stack = stack_with_a_projected_database().await;
    // The active group claims an offset far past the end of one partition, so the build can
    // never reach it and the swap waits: Ctrl-C is sure to come during the build.
    let db =
        Database::connect(&DatabaseSettings { url: stack.database.url().to_owned(), ..DatabaseSettings::default() })
            .await
            .unwrap();
    let ahead = PartitionOffset { topic: "customers".into(), partition: 0, next_offset: 1_000_000 };
    OffsetStore::new(db).store(&stack.group, &[ahead]).await.unwrap();

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_eventline"))
        .args(["rebuild", "projector"])
        .env("EVENTLINE_KAFKA__BOOTSTRAP_SERVERS", stack.broker.bootstrap_servers())
        .env("EVENTLINE_SCHEMA_REGISTRY__URL", &stack.registry_url)
        .env("EVENTLINE_DATABASE__URL", stack.database.url())
        .env("EVENTLINE_CONSUMERS__PROJECTOR__CONSUMER__GROUP_ID", &stack.group)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut printed = String::new();
    let waiting = tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            printed.push_str(&line);
            printed.push('\n');
            if line.contains("waiting to reach the active generation on 1 partitions") {
                return;
            }
        }
    })
    .await;
    assert!(waiting.is_ok(), "the build never waited for the active generation:\n{printed}");
    let pid = child.id().unwrap().to_string();
    assert!(tokio::process::Command::new("kill").args(["-INT", &pid]).status().await.unwrap().success());
    let output = tokio::time::timeout(WAIT, child.wait_with_output()).await.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "an interrupted rebuild exits non-zero");
    assert!(
        stdout.contains(
            "interrupted: generation 1 is still active and untouched; generation 2 was retired and its tables dropped"
        ),
        "{stdout}"
    );
    assert_eq!(
        status(&stack).await,
        (1, vec![(1, "active".into(), Some(stack.published as i64)), (2, "retired".into(), None)])
    );
    stack.stop().await;
}
