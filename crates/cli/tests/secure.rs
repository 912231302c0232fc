//! The `eventline` binary against Apache Kafka's SASL_SSL listener, configured the way a user
//! does it (`EVENTLINE_KAFKA__PROPERTIES__…` variables): `publish` writes events that `tail`
//! reads back; a wrong password or a CA that did not sign the broker's certificate stops a
//! command within seconds with an error that names the broker and the cause.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use eventline_common::kafka::KafkaSettings;
use eventline_e2e::Stack;
use eventline_testkit::secure::SaslMechanism;
use eventline_testkit::{unique, Broker};
use serde_json::json;
use tokio::io::AsyncWriteExt;

/// How soon a command must fail on bad credentials or an untrusted certificate (the check's
/// deadline for a broker that does not answer is longer).
const FAILS_WITHIN: Duration = Duration::from_secs(8);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_and_tail_go_through_sasl_ssl_configured_from_the_environment() {
    // A broker of the test's own: `publish` writes to the catalog's topics.
    let stack = Stack::start_on(Broker::start_secure().await).await;
    let kafka = stack.broker.secure().unwrap().kafka_settings(SaslMechanism::ScramSha512);
    let customer = unique("c");
    let orders: Vec<String> = (0..3)
        .map(|i| {
            json!({"type": "OrderPlaced", "data": {
                "order_id": format!("{customer}-o{i}"), "customer_id": customer, "currency": "EUR", "total_minor": 500,
                "lines": [{"sku": "A", "quantity": 1, "unit_price_minor": 500}], "placed_at": 1_795_000_000_000u64}})
            .to_string()
        })
        .collect();

    let published = eventline(&stack, &kafka, &["publish", "--output", "json"], Some(orders.join("\n"))).await;
    assert!(published.status.success(), "{}", String::from_utf8_lossy(&published.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&published.stdout).unwrap();
    assert_eq!(summary["published"], 3, "{summary}");

    let mut read = Vec::new();
    for i in 0..3 {
        let key = format!("{customer}-o{i}");
        let tailed = eventline(&stack, &kafka, &["tail", "orders", "--key", &key, "--output", "json"], None).await;
        assert!(tailed.status.success(), "{}", String::from_utf8_lossy(&tailed.stderr));
        let stdout = String::from_utf8(tailed.stdout).unwrap();
        let lines: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 1, "{stdout}");
        read.push(lines[0]["value"]["order_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(read, [0, 1, 2].map(|i| format!("{customer}-o{i}")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_or_an_untrusted_ca_stops_a_command_naming_the_broker_and_the_cause() {
    let broker = Broker::shared_secure();
    let secure = broker.secure().unwrap();
    // No registry: the commands check the broker before anything else.
    let nowhere = format!("http://127.0.0.1:{}", eventline_testkit::free_port());

    let mut wrong_password = secure.kafka_settings(SaslMechanism::ScramSha256);
    wrong_password.properties.insert("sasl.password".into(), "not-the-password".into());
    let started = Instant::now();
    let out = eventline_with(&nowhere, &wrong_password, &["tail", "orders"], None).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(&secure.bootstrap_servers()), "names the broker: {stderr}");
    assert!(stderr.contains("SASL authentication failed"), "{stderr}");
    assert!(!stderr.contains("not-the-password"), "{stderr}");
    assert!(started.elapsed() < FAILS_WITHIN, "took {:?}", started.elapsed());

    let started = Instant::now();
    let out = eventline_with(&nowhere, &wrong_password, &["up", "--external-broker"], None).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(&secure.bootstrap_servers()) && stderr.contains("SASL authentication failed"), "{stderr}");
    assert!(started.elapsed() < FAILS_WITHIN, "took {:?}", started.elapsed());

    let mut untrusted = secure.kafka_settings(SaslMechanism::ScramSha256);
    untrusted.properties.insert("ssl.ca.location".into(), secure.untrusted_ca_path().display().to_string());
    let started = Instant::now();
    let out = eventline_with(&nowhere, &untrusted, &["publish"], Some(String::new())).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(&secure.bootstrap_servers()), "names the broker: {stderr}");
    assert!(stderr.contains("SSL handshake failed") && stderr.contains("certificate verify failed"), "{stderr}");
    assert!(started.elapsed() < FAILS_WITHIN, "took {:?}", started.elapsed());
}

async fn eventline(stack: &Stack, kafka: &KafkaSettings, args: &[&str], stdin: Option<String>) -> std::process::Output {
    eventline_with(&stack.registry.url, kafka, args, stdin).await
}

/// Runs `eventline` with `kafka` given as a user would: one `EVENTLINE_KAFKA__PROPERTIES__…`
/// variable per property, `__` for each dot of its name.
async fn eventline_with(
    registry_url: &str,
    kafka: &KafkaSettings,
    args: &[&str],
    stdin: Option<String>,
) -> std::process::Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_eventline"));
    command
        .args(args)
        .env("EVENTLINE_KAFKA__BOOTSTRAP_SERVERS", &kafka.bootstrap_servers)
        .env("EVENTLINE_SCHEMA_REGISTRY__URL", registry_url)
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    for (key, value) in &kafka.properties {
        command.env(format!("EVENTLINE_KAFKA__PROPERTIES__{}", key.replace('.', "__").to_uppercase()), value);
    }
    let mut child = command.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or_default().as_bytes()).await.unwrap();
    drop(input);
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await.expect("eventline finished").unwrap()
}
