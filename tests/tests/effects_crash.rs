//! The effect ledger's guarantee, shown with SIGKILL: a consumer service with one webhook call
//! per order (the `effect_probe` binary) is killed at random points while it consumes and
//! calls, and started again, on SQLite and on PostgreSQL. Every order's call arrives (0 lost);
//! a call arrives twice only when a kill fell between the receiver's answer and `done` (so at
//! most the calls in flight per kill), always with the same `webhook-id`; a replay of the whole
//! topic records and performs nothing again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use eventline_common::db::{Database, DatabaseSettings};
use eventline_common::effects::{EffectLedger, EffectState};
use eventline_common::kafka::consumer::{OffsetStore, PartitionOffset};
use eventline_common::kafka::Position;
use eventline_e2e::{order_placed, Stack};
use eventline_testkit::{eventually, free_port, unique, PgDatabase, SqliteDatabase};
use rand::Rng as _;
use serde_json::Value;
use tokio::process::{Child, Command};

const ORDERS: usize = 300;
const KILLS: usize = 4;
const CONCURRENCY: usize = 4;
const WAIT: Duration = Duration::from_secs(90);

type Calls = Arc<Mutex<Vec<(String, String)>>>;

/// The receiver: remembers (webhook-id, order id) of every call, answering after a short random
/// pause so kills land while calls are in flight.
async fn receiver() -> (String, Calls) {
    async fn call(State(calls): State<Calls>, headers: HeaderMap, Json(body): Json<Value>) -> &'static str {
        let pause = rand::rng().random_range(0..20);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        calls.lock().unwrap().push((id, body["order_id"].as_str().unwrap_or("").to_owned()));
        "ok"
    }
    let calls = Calls::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = Router::new().route("/hook", post(call)).with_state(calls.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, calls)
}

/// Its log goes to a file of the test's, printed when it fails to stop cleanly.
fn probe(stack: &Stack, database: &str, group: &str, receiver: &str, port: u16) -> Child {
    let log = std::env::temp_dir().join(format!("{group}.log"));
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    Command::new(env!("CARGO_BIN_EXE_effect_probe"))
        .env("EVENTLINE_KAFKA__BOOTSTRAP_SERVERS", stack.broker.bootstrap_servers())
        .env("EVENTLINE_SCHEMA_REGISTRY__URL", &stack.registry.url)
        .env("EVENTLINE_DATABASE__URL", database)
        .env("EVENTLINE_CONSUMERS__EFFECT_PROBE__RECEIVER", receiver)
        .env("EVENTLINE_CONSUMERS__EFFECT_PROBE__LISTEN", format!("127.0.0.1:{port}"))
        .env("EVENTLINE_CONSUMERS__EFFECT_PROBE__CONSUMER__GROUP_ID", group)
        .env("EVENTLINE_CONSUMERS__EFFECT_PROBE__CONSUMER__BATCH_MAX_SIZE", "20")
        // A killed member holds its partitions until its session times out (45 s by default).
        .env(
            "EVENTLINE_CONSUMERS__EFFECT_PROBE__CONSUMER__PROPERTIES",
            r#"{"session.timeout.ms"="6000","heartbeat.interval.ms"="1000"}"#,
        )
        .env("EVENTLINE_CONSUMERS__EFFECT_PROBE__CONSUMER__BATCH_LINGER", "10ms")
        .env("EVENTLINE_CONSUMERS__EFFECT_PROBE__EFFECTS__CONCURRENCY", CONCURRENCY.to_string())
        .env("EVENTLINE_CONSUMERS__EFFECT_PROBE__EFFECTS__POLL_INTERVAL", "50ms")
        .env("EVENTLINE_CONSUMERS__EFFECT_PROBE__EFFECTS__TIMEOUT", "1s")
        .env("EVENTLINE_CONSUMERS__EFFECT_PROBE__EFFECTS__LEASE", "2s")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stderr(log.try_clone().unwrap())
        .stdout(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Waits until the probe serves its health (it is past start-up), then stops it with SIGTERM.
async fn terminate(mut child: Child, group: &str, port: u16) {
    eventually("the probe to serve its health", WAIT, || async {
        let response = reqwest::get(format!("http://127.0.0.1:{port}/health/live")).await.ok()?;
        response.status().is_success().then_some(())
    })
    .await;
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = tokio::time::timeout(WAIT, child.wait()).await.unwrap().unwrap();
    let log = std::fs::read_to_string(std::env::temp_dir().join(format!("{group}.log"))).unwrap_or_default();
    assert!(status.success(), "the probe exited with {status}; its log:\n{log}");
}

async fn effects_survive_sigkill(database_url: &str) {
    let stack = Stack::start().await;
    let (receiver, calls) = receiver().await;
    let orders: Vec<_> = (0..ORDERS).map(|n| order_placed(&format!("order-{n}"), "EUR")).collect();
    let mut ends: BTreeMap<i32, Position> = BTreeMap::new();
    for position in stack.publish(&orders).await {
        ends.insert(position.partition, position);
    }
    let group = unique("effect-probe");

    for _ in 0..KILLS {
        let mut child = probe(&stack, database_url, &group, &receiver, free_port());
        let after = rand::rng().random_range(300..1_500);
        tokio::time::sleep(Duration::from_millis(after)).await;
        child.start_kill().unwrap();
        child.wait().await.unwrap();
    }
    let port = free_port();
    let child = probe(&stack, database_url, &group, &receiver, port);
    let db = Database::connect(&DatabaseSettings { url: database_url.to_owned(), ..DatabaseSettings::default() })
        .await
        .unwrap();
    let ledger = EffectLedger::new(db.clone(), "effect_probe");
    eventually("every order's call to be done", WAIT, || async {
        let counts = ledger.counts().await.ok()?;
        (counts == BTreeMap::from([(EffectState::Done, ORDERS as i64)])).then_some(())
    })
    .await;

    let received = calls.lock().unwrap().clone();
    let mut ids: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (id, order) in &received {
        ids.entry(order.as_str()).or_default().insert(id.as_str());
    }
    assert_eq!(ids.len(), ORDERS, "every order's call arrived: 0 lost");
    assert!(ids.values().all(|ids| ids.len() == 1 && !ids.contains("")), "every copy of a call carries the same id");
    let duplicates = received.len() - ORDERS;
    println!("{} calls for {ORDERS} orders across {KILLS} kills: {duplicates} arrived twice", received.len());
    assert!(
        duplicates <= KILLS * CONCURRENCY,
        "{duplicates} calls arrived twice: more than the {} in flight across {KILLS} kills",
        KILLS * CONCURRENCY
    );

    // A replay of the whole topic: every event is consumed again, nothing is called again.
    terminate(child, &group, port).await;
    let from_start: Vec<PartitionOffset> =
        ends.keys().map(|&partition| PartitionOffset { topic: "orders".into(), partition, next_offset: 0 }).collect();
    let offsets = OffsetStore::new(db.clone());
    offsets.store(&group, &from_start).await.unwrap();
    let port = free_port();
    let child = probe(&stack, database_url, &group, &receiver, port);
    eventually("the replay to reach the end of the topic", WAIT, || async {
        for end in ends.values() {
            if !offsets.has_passed(&group, end).await.ok()? {
                return None;
            }
        }
        Some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    terminate(child, &group, port).await;
    assert_eq!(calls.lock().unwrap().len(), received.len(), "the replay called nothing again");
    assert_eq!(ledger.counts().await.unwrap(), BTreeMap::from([(EffectState::Done, ORDERS as i64)]));
}

#[tokio::test]
async fn effects_survive_sigkill_and_replay_on_sqlite() {
    let db = SqliteDatabase::create();
    effects_survive_sigkill(db.url()).await;
}

#[tokio::test]
async fn effects_survive_sigkill_and_replay_on_postgres() {
    let db = PgDatabase::create().await;
    effects_survive_sigkill(db.url()).await;
}
