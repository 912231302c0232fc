//! `eventline up` as a user runs it: the real binary, a real Tansu broker, SQLite on disk.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use eventline_common::kafka::admin::topic_names;
use eventline_common::kafka::KafkaSettings;
use eventline_testkit::free_port;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

struct Ports {
    kafka: u16,
    registry: u16,
}

fn eventline(dir: &Path, ports: &Ports) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_eventline"));
    command
        .current_dir(dir)
        .env("EVENTLINE_KAFKA__BOOTSTRAP_SERVERS", format!("127.0.0.1:{}", ports.kafka))
        .env("EVENTLINE_REGISTRY__LISTEN", format!("127.0.0.1:{}", ports.registry))
        .env("EVENTLINE_SCHEMA_REGISTRY__URL", format!("http://127.0.0.1:{}", ports.registry))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Starts `eventline up` and returns it with everything it printed up to its banner.
async fn up(dir: &Path, ports: &Ports) -> (Child, String) {
    let mut child = eventline(dir, ports).arg("up").spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = String::new();
    let banner = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            printed.push_str(&line);
            printed.push('\n');
            if line.starts_with("Press Ctrl-C") {
                return;
            }
        }
    })
    .await;
    assert!(banner.is_ok(), "no banner within 60s; printed:\n{printed}");
    (child, printed)
}

async fn stop(mut child: Child) {
    let pid = child.id().unwrap().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().await.unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "eventline up must drain and exit 0 on SIGTERM, got {status}");
}

#[tokio::test]
async fn up_runs_broker_and_registry_and_keeps_state_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports { kafka: free_port(), registry: free_port() };
    let (child, printed) = up(dir.path(), &ports).await;
    assert!(printed.contains("Eventline is up."), "{printed}");
    assert!(printed.contains("orders (6 partitions, new)"), "{printed}");
    assert!(printed.contains("9 registered"), "{printed}");

    let registry = format!("http://127.0.0.1:{}", ports.registry);
    let subjects: Vec<String> = reqwest::get(format!("{registry}/subjects")).await.unwrap().json().await.unwrap();
    assert_eq!(subjects.len(), 9, "{subjects:?}");
    assert!(subjects.contains(&"orders-com.eventline.commerce.OrderPlaced".to_owned()));
    let latest: serde_json::Value = reqwest::get(format!("{registry}/subjects/orders-com.eventline.commerce.OrderPlaced/versions/latest"))
        .await.unwrap().json().await.unwrap();
    let topics = topic_names(&KafkaSettings::for_bootstrap(format!("127.0.0.1:{}", ports.kafka))).await.unwrap();
    for topic in ["customers", "orders", "payments"] {
        assert!(topics.contains(&topic.to_owned()), "{topic} missing from {topics:?}");
    }
    assert!(dir.path().join(".eventline/tansu.db").exists(), "the broker's log must live on disk");
    stop(child).await;

    // Second start: same log and database, nothing new, the same schema ids.
    let (child, printed) = up(dir.path(), &ports).await;
    assert!(printed.contains("orders (6 partitions)"), "topics must survive a restart:\n{printed}");
    let again: serde_json::Value = reqwest::get(format!("{registry}/subjects/orders-com.eventline.commerce.OrderPlaced/versions/latest"))
        .await.unwrap().json().await.unwrap();
    assert_eq!(again["id"], latest["id"]);
    assert_eq!(again["version"], 1);
    stop(child).await;
}

#[tokio::test]
async fn a_config_typo_is_an_error_that_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports { kafka: free_port(), registry: free_port() };
    let output = eventline(dir.path(), &ports).env("EVENTLINE_UP__DATA_DRI", "x").arg("up").output().await.unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("data_dri"), "{stderr}");

    std::fs::write(dir.path().join("el.toml"), "[kafak]\nbootstrap_servers = \"x:1\"\n").unwrap();
    let output = eventline(dir.path(), &ports).args(["--config", "el.toml", "up"]).output().await.unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("kafak"), "{stderr}");
}

#[tokio::test]
async fn schemas_list_prints_the_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports { kafka: free_port(), registry: free_port() };
    let output = eventline(dir.path(), &ports).args(["schemas", "list"]).output().await.unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(stdout.lines().count(), 10, "{stdout}");
    assert!(stdout.contains("PaymentRefunded        payments   order_id     payments-com.eventline.commerce.PaymentRefunded"), "{stdout}");
}
