//! `eventline up` as a user runs it: the real binary, a real Apache Kafka broker, SQLite on disk.

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
        Self {
            kafka: free_port(),
            registry: free_port(),
            ingest: free_port(),
            projector: free_port(),
            admin: free_port(),
        }
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
        .env("EVENTLINE_CONSUMERS__PROJECTOR__LISTEN", format!("127.0.0.1:{}", ports.projector))
        .env("EVENTLINE_CONSUMERS__ORDER_COUNTER__LISTEN", "127.0.0.1:0")
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
    let latest: serde_json::Value =
        reqwest::get(format!("{registry}/subjects/orders-com.eventline.commerce.OrderPlaced/versions/latest"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
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
    let order: serde_json::Value =
        reqwest::get(format!("http://127.0.0.1:{}/v1/orders/o-1001?after={position}", ports.projector))
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
    let group: serde_json::Value = client
        .get(&admin)
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(group["offsets_from"], "database", "{group}");
    stop(child).await;

    // Second start: same log and database, nothing new, the same schema ids.
    let (child, printed) = up(dir.path(), &ports).await;
    assert!(printed.contains("orders (6 partitions)"), "topics must survive a restart:\n{printed}");
    let again: serde_json::Value =
        reqwest::get(format!("{registry}/subjects/orders-com.eventline.commerce.OrderPlaced/versions/latest"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
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
    assert!(
        stdout
            .contains("PaymentRefunded        payments   order_id     payments-com.eventline.commerce.PaymentRefunded"),
        "{stdout}"
    );
}

#[tokio::test]
async fn up_relays_an_upstream_outbox_when_given_its_database() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    let upstream = eventline_testkit::PgDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let env =
        [("EVENTLINE_OUTBOX_RELAY__DATABASE_URL", upstream.url()), ("EVENTLINE_OUTBOX_RELAY__CREATE_TABLE", "true")];
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

/// `kill -9` of the whole `eventline up` while events are being published: its broker goes
/// with it (nothing is left on the port), the next `eventline up` on the same directory comes
/// up, the projector resumes, and the read model ends equal to the log: the customer's order
/// count is the number of its orders on the log (each applied once, none lost), and every
/// acknowledged order is on the log.
#[tokio::test]
async fn a_sigkilled_up_leaves_no_broker_behind_and_resumes_with_the_read_model_equal_to_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let (mut child, _) = up(dir.path(), &ports).await;
    let pid_file = dir.path().join(".eventline/kafka/kafka.pid");
    let broker_pid = std::fs::read_to_string(&pid_file).unwrap().trim().to_owned();
    let customer = eventline_testkit::unique("c-kill");
    let ingest = format!("http://127.0.0.1:{}/v1/events", ports.ingest);
    let order = {
        let customer = customer.clone();
        move |i: usize| {
            serde_json::json!({"type": "OrderPlaced", "data": {"order_id": format!("{customer}-o{i}"), "customer_id": customer,
            "currency": "EUR", "total_minor": 100 + i, "lines": [], "placed_at": "2026-11-23T10:00:00Z"}})
        }
    };

    let registered = reqwest::Client::new()
        .post(&ingest)
        .json(&serde_json::json!({"type": "CustomerRegistered", "data": {"customer_id": customer,
            "email": "kill@example.com", "name": "Kill Test", "registered_at": "2026-11-23T09:00:00Z"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 201);

    // Publishing under load: four clients, until the process is killed under them.
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let loaders: Vec<_> = (0..4)
        .map(|_| {
            let (acknowledged, next, ingest, order) =
                (acknowledged.clone(), next.clone(), ingest.clone(), order.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let event = order(i);
                    match http.post(&ingest).json(&event).send().await {
                        Ok(answer) if answer.status() == 201 => {
                            let id = event["data"]["order_id"].as_str().unwrap().to_owned();
                            acknowledged.lock().unwrap().push(id);
                        }
                        Ok(_) => {}
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    eventline_testkit::eventually("200 events acknowledged before the kill", Duration::from_secs(60), || async {
        (acknowledged.lock().unwrap().len() >= 200).then_some(())
    })
    .await;
    child.kill().await.unwrap();
    for loader in loaders {
        loader.await.unwrap();
    }
    eventline_testkit::eventually("the broker to die with eventline up", Duration::from_secs(30), || async {
        (!Path::new(&format!("/proc/{broker_pid}")).exists()).then_some(())
    })
    .await;

    let restarted = std::time::Instant::now();
    let (child, _) = up(dir.path(), &ports).await;
    let http = reqwest::Client::new();
    let total = next.load(std::sync::atomic::Ordering::SeqCst);
    for i in total..total + 50 {
        assert_eq!(http.post(&ingest).json(&order(i)).send().await.unwrap().status(), 201);
    }

    // The log, read by a consumer of its own: every order of this customer, by order id.
    let in_log = orders_in_log(&format!("127.0.0.1:{}", ports.kafka), &customer).await;
    let acknowledged = acknowledged.lock().unwrap().clone();
    let lost: Vec<&String> = acknowledged.iter().filter(|id| !in_log.contains_key(*id)).collect();
    assert!(lost.is_empty(), "acknowledged orders missing from the log: {lost:?}");
    let customer_url = format!("http://127.0.0.1:{}/v1/customers/{customer}", ports.projector);
    let mut view = serde_json::Value::Null;
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while view["order_count"].as_u64() != Some(in_log.len() as u64) {
        assert!(
            std::time::Instant::now() < deadline,
            "the read model did not reach the log ({} orders) within 90 s: {view}",
            in_log.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Ok(answer) = http.get(&customer_url).send().await {
            view = answer.json().await.unwrap_or_default();
        }
    }
    let resumed = restarted.elapsed();
    // librdkafka's session timeout (45 s): the killed member leaves the group by then.
    assert!(resumed < Duration::from_secs(75), "the projector took {resumed:?} to catch up after the restart");
    eprintln!(
        "caught up {resumed:?} after the restart; {} orders in the log, {} acknowledged before the kill",
        in_log.len(),
        acknowledged.len()
    );
    stop(child).await;
}

/// The orders of `customer` on the `orders` topic (order id → total), read from the beginning
/// by a consumer of its own until the end offsets seen when it started.
async fn orders_in_log(bootstrap: &str, customer: &str) -> std::collections::BTreeMap<String, i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    let bootstrap = bootstrap.to_owned();
    let customer = customer.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = KafkaSettings::for_bootstrap(bootstrap)
            .client_config()
            .set("group.id", eventline_testkit::unique("log-reader"))
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut partitions = rdkafka::TopicPartitionList::new();
        let mut ends = std::collections::BTreeMap::new();
        for partition in 0..6 {
            let (_, high) = consumer.fetch_watermarks("orders", partition, Duration::from_secs(10)).unwrap();
            ends.insert(partition, high);
            partitions.add_partition_offset("orders", partition, rdkafka::Offset::Beginning).unwrap();
        }
        consumer.assign(&partitions).unwrap();
        let mut orders = std::collections::BTreeMap::new();
        let mut positions: std::collections::BTreeMap<i32, i64> = ends.keys().map(|p| (*p, 0)).collect();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while positions.iter().any(|(p, at)| *at < ends[p]) {
            assert!(std::time::Instant::now() < deadline, "the log was not read to its end: {positions:?} of {ends:?}");
            let Some(message) = consumer.poll(Duration::from_millis(200)) else {
                continue;
            };
            let message = message.unwrap();
            positions.insert(message.partition(), message.offset() + 1);
            let framed = eventline_common::avro::unframe(message.payload().unwrap()).unwrap();
            let catalog = eventline_common::catalog::Catalog::embedded().unwrap();
            let schema = &catalog.event("OrderPlaced").unwrap().schema;
            let placed: eventline_common::events::OrderPlaced =
                eventline_common::avro::decode(framed.body, schema, None).unwrap();
            if placed.customer_id == customer {
                orders.insert(placed.order_id, placed.total_minor);
            }
        }
        orders
    })
    .await
    .unwrap()
}
