//! `eventline up` as a user runs it: the real binary, a real Tansu broker, SQLite on disk.

#![allow(clippy::unwrap_used, clippy::expect_used)]

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
    ingest: u16,
    projector: u16,
    admin: u16,
}

impl Ports {
    fn free() -> Self {
        Self { kafka: free_port(), registry: free_port(), ingest: free_port(), projector: free_port(), admin: free_port() }
    }
}

fn eventline(dir: &Path, ports: &Ports) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_eventline"));
    command
        .current_dir(dir)
        .env("EVENTLINE_KAFKA__BOOTSTRAP_SERVERS", format!("127.0.0.1:{}", ports.kafka))
        .env("EVENTLINE_REGISTRY__LISTEN", format!("127.0.0.1:{}", ports.registry))
        .env("EVENTLINE_SCHEMA_REGISTRY__URL", format!("http://127.0.0.1:{}", ports.registry))
        .env("EVENTLINE_INGEST__LISTEN", format!("127.0.0.1:{}", ports.ingest))
        .env("EVENTLINE_PROJECTOR__LISTEN", format!("127.0.0.1:{}", ports.projector))
        .env("EVENTLINE_ADMIN__LISTEN", format!("127.0.0.1:{}", ports.admin))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Starts `eventline up` and returns it with everything it printed up to its banner.
async fn up(dir: &Path, ports: &Ports) -> (Child, String) {
    up_with(dir, ports, &[]).await
}

async fn up_with(dir: &Path, ports: &Ports, env: &[(&str, &str)]) -> (Child, String) {
    let mut command = eventline(dir, ports);
    command.envs(env.iter().copied());
    let mut child = command.arg("up").spawn().unwrap();
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
    let ports = Ports::free();
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
    assert!(dir.path().join(".eventline/kafka/log/meta.properties").exists(), "the broker's log must live on disk");

    // Publishing over HTTP, as the README shows.
    let answer = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/v1/events", ports.ingest))
        .json(&serde_json::json!({"type": "OrderPlaced", "data": {"order_id": "o-1001", "customer_id": "c-42",
            "currency": "EUR", "total_minor": 2500, "lines": [{"sku": "SKU-RED-MUG", "quantity": 2, "unit_price_minor": 1250}],
            "placed_at": "2026-11-23T10:00:00Z"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 201);
    let published: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(published["topic"], "orders");
    assert_eq!(published["offset"], 0);

    // ...and reading it back from the read model, waiting for the position ingest answered.
    let position = format!("orders:{}:{}", published["partition"], published["offset"]);
    let order: serde_json::Value = reqwest::get(format!("http://127.0.0.1:{}/v1/orders/o-1001?after={position}", ports.projector))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(order["order_id"], "o-1001", "{order}");
    assert_eq!(order["total_minor"], 2500, "{order}");

    // The admin API, with the token `up` made for this data directory (and only with it).
    let token = std::fs::read_to_string(dir.path().join(".eventline/admin-token")).unwrap();
    assert!(token.len() >= 32, "a long random token");
    let admin = format!("http://127.0.0.1:{}/admin/v1/groups/eventline-projector", ports.admin);
    let client = reqwest::Client::new();
    assert_eq!(client.get(&admin).send().await.unwrap().status(), 401);
    let group: serde_json::Value =
        client.get(&admin).bearer_auth(token.trim()).send().await.unwrap().error_for_status().unwrap().json().await.unwrap();
    assert_eq!(group["offsets_from"], "database", "{group}");
    stop(child).await;

    // Second start: same log and database, nothing new, the same schema ids.
    let (child, printed) = up(dir.path(), &ports).await;
    assert!(printed.contains("orders (6 partitions)"), "topics must survive a restart:\n{printed}");
    let again: serde_json::Value = reqwest::get(format!("{registry}/subjects/orders-com.eventline.commerce.OrderPlaced/versions/latest"))
        .await.unwrap().json().await.unwrap();
    assert_eq!(again["id"], latest["id"]);
    assert_eq!(again["version"], 1);
    let token_again = std::fs::read_to_string(dir.path().join(".eventline/admin-token")).unwrap();
    assert_eq!(token_again, token, "the admin token stays across restarts");
    stop(child).await;
}

#[tokio::test]
async fn a_config_typo_is_an_error_that_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
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
    let ports = Ports::free();
    let output = eventline(dir.path(), &ports).args(["schemas", "list"]).output().await.unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(stdout.lines().count(), 10, "{stdout}");
    assert!(stdout.contains("PaymentRefunded        payments   order_id     payments-com.eventline.commerce.PaymentRefunded"), "{stdout}");
}

#[tokio::test]
async fn up_relays_an_upstream_outbox_when_given_its_database() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    let upstream = eventline_testkit::PgDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let env = [("EVENTLINE_OUTBOX_RELAY__DATABASE_URL", upstream.url()), ("EVENTLINE_OUTBOX_RELAY__CREATE_TABLE", "true")];
    let (child, printed) = up_with(dir.path(), &ports, &env).await;
    assert!(printed.contains("outbox relay     on, table eventline_outbox"), "{printed}");

    let pool = sqlx::PgPool::connect(upstream.url()).await.unwrap();
    sqlx::query(
        "INSERT INTO eventline_outbox (event_type, aggregate_id, payload) VALUES ('OrderPlaced', 'o-up-1', $1::jsonb)",
    )
    .bind(r#"{"order_id":"o-up-1","customer_id":"c-1","currency":"EUR","total_minor":100,"lines":[],"placed_at":"2026-11-23T10:00:00Z"}"#)
    .execute(&pool)
    .await
    .unwrap();

    let bootstrap = format!("127.0.0.1:{}", ports.kafka);
    let key = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = KafkaSettings::for_bootstrap(bootstrap)
            .client_config()
            .set("group.id", "up-outbox-test")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut partitions = rdkafka::TopicPartitionList::new();
        for partition in 0..6 {
            partitions.add_partition_offset("orders", partition, rdkafka::Offset::Beginning).unwrap();
        }
        consumer.assign(&partitions).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
                return message.key().map(<[u8]>::to_vec);
            }
        }
        None
    })
    .await
    .unwrap();
    assert_eq!(key.as_deref(), Some(&b"o-up-1"[..]), "the outbox row must arrive on the orders topic");
    // The mark commits just after the broker's acknowledgement, so it may trail the message.
    eventline_testkit::eventually("the row to be marked published", Duration::from_secs(20), || async {
        let published: Option<chrono::DateTime<chrono::Utc>> =
            sqlx::query_scalar("SELECT published_at FROM eventline_outbox WHERE aggregate_id = 'o-up-1'")
                .fetch_one(&pool)
                .await
                .ok()?;
        published
    })
    .await;
    pool.close().await;
    stop(child).await;
}
