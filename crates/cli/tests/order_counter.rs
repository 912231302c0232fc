//! README's "Adding a consumer" example as a user runs it: the same file is the
//! `eventline-order-counter` crate, run with `eventline run order_counter` (the real binary)
//! against Apache Kafka and the registry; it counts the orders placed per currency and serves the
//! counts, its health and its metrics; a redelivery after a restart counts nothing twice.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use eventline_e2e::{order_placed, Stack};
use eventline_testkit::{eventually, free_port, unique, SqliteDatabase};
use serde_json::{json, Value};
use tokio::process::{Child, Command};

const WAIT: Duration = Duration::from_secs(60);

#[test]
fn the_readme_shows_the_example_consumer_as_it_is() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let example = std::fs::read_to_string(root.join("consumers/order-counter/src/lib.rs")).unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let block = format!("```rust\n{example}```");
    assert!(
        readme.contains(&block),
        "README's \"Adding a consumer\" must show consumers/order-counter/src/lib.rs verbatim"
    );
}

struct Counter {
    child: Child,
    url: String,
}

async fn start_counter(stack: &Stack, database: &SqliteDatabase, group: &str) -> Counter {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_eventline"))
        .args(["run", "order_counter"])
        .env("EVENTLINE_KAFKA__BOOTSTRAP_SERVERS", stack.broker.bootstrap_servers())
        .env("EVENTLINE_SCHEMA_REGISTRY__URL", &stack.registry.url)
        .env("EVENTLINE_DATABASE__URL", database.url())
        .env("EVENTLINE_CONSUMERS__ORDER_COUNTER__LISTEN", format!("127.0.0.1:{port}"))
        .env("EVENTLINE_CONSUMERS__ORDER_COUNTER__CONSUMER__GROUP_ID", group)
        .env("EVENTLINE_CONSUMERS__ORDER_COUNTER__CONSUMER__BATCH_LINGER", "20ms")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    Counter { child, url: format!("http://127.0.0.1:{port}") }
}

impl Counter {
    async fn get(&self, path: &str) -> Option<(u16, String)> {
        let response = reqwest::get(format!("{}{path}", self.url)).await.ok()?;
        Some((response.status().as_u16(), response.text().await.ok()?))
    }

    async fn counts_become(&self, expected: Value) {
        eventually(&format!("the counts to become {expected}"), WAIT, || async {
            let (status, body) = self.get("/orders/count").await?;
            let counts: Value = serde_json::from_str(&body).ok()?;
            (status == 200 && counts == expected).then_some(())
        })
        .await;
    }

    async fn terminate(mut self) {
        let pid = self.child.id().unwrap();
        let killed = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
        assert!(killed.success());
        let status = tokio::time::timeout(WAIT, self.child.wait()).await.unwrap().unwrap();
        assert!(status.success(), "eventline run order_counter exited with {status}");
    }
}

fn order(n: usize, currency: &str) -> Value {
    order_placed(&format!("order-{n}"), currency)
}

#[tokio::test]
async fn the_example_consumer_counts_orders_and_serves_them_through_a_restart() {
    let stack = Stack::start().await;
    stack.publish(&(0..7).map(|n| order(n, "EUR")).chain((7..10).map(|n| order(n, "USD"))).collect::<Vec<_>>()).await;
    // Another event type on the same topic is not the counter's business.
    stack
        .publish(&[json!({"type": "OrderShipped", "data": {
            "order_id": "order-0", "carrier": "dhl", "tracking_number": "t", "shipped_at": "2026-01-01T00:00:00Z"}})])
        .await;

    let database = SqliteDatabase::create();
    let group = unique("order-counter");
    let counter = start_counter(&stack, &database, &group).await;
    counter.counts_become(json!({"EUR": 7, "USD": 3})).await;

    let (status, _) = counter.get("/health/ready").await.unwrap();
    assert_eq!(status, 200);
    let (_, metrics) = counter.get("/metrics").await.unwrap();
    let handled = format!("eventline_consumer_events_total{{group=\"{group}\",outcome=\"handled\"}} 10");
    assert!(metrics.contains(&handled), "the runtime's metrics are served by the service:\n{metrics}");
    counter.terminate().await;

    // Restarted: it resumes from its stored offsets, so nothing is counted twice.
    stack.publish(&(10..12).map(|n| order(n, "EUR")).collect::<Vec<_>>()).await;
    let counter = start_counter(&stack, &database, &group).await;
    counter.counts_become(json!({"EUR": 9, "USD": 3})).await;
    counter.terminate().await;
}

#[tokio::test]
async fn an_unknown_service_or_consumer_table_is_refused_with_the_names_known() {
    let out = Command::new(env!("CARGO_BIN_EXE_eventline")).args(["run", "order_countr"]).output().await.unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no consumer service `order_countr`") && stderr.contains("order_counter"), "{stderr}");

    let out = Command::new(env!("CARGO_BIN_EXE_eventline"))
        .args(["run", "order_counter"])
        .env("EVENTLINE_CONSUMERS__ORDER_COUNTR__LISTEN", "127.0.0.1:1")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown consumer `order_countr`"), "{stderr}");
}
