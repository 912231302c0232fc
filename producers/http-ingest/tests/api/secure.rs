//! The ingest service with Kafka behind TLS and SASL (Apache Kafka's SASL_SSL listener, SCRAM):
//! events are published through it, and the service's binary refuses to start, within seconds
//! and naming the broker and the cause, when its password is wrong.

use std::time::{Duration, Instant};

use eventline_testkit::secure::SaslMechanism;
use eventline_testkit::Broker;

use crate::helpers::{order_event, order_id, spawn_app_on, Db};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_published_through_a_sasl_ssl_listener() {
    let app = spawn_app_on(Broker::start_secure(), Db::Sqlite, |_| {}).await;
    let kafka = app.broker.kafka_settings();
    assert_eq!(kafka.properties.get("security.protocol").map(String::as_str), Some("SASL_SSL"));

    let (event, order) = order_event(&order_id());
    let reply = app.publish(&event).await;
    assert_eq!(reply.status, 201, "{reply:#?}");
    let message = app.message_at(&reply.body).await;
    assert_eq!(app.decode_order(&message).await, order);
    let ready = app.get("/health/ready").await;
    assert_eq!(ready.status, 200, "the readiness probe gets through too: {ready:#?}");
}

#[tokio::test]
async fn the_binary_stops_at_start_with_a_wrong_password_naming_the_broker() {
    let broker = Broker::shared_secure();
    let secure = broker.secure().expect("a SASL_SSL listener");
    let mut kafka = secure.kafka_settings(SaslMechanism::ScramSha512);
    kafka.properties.insert("sasl.password".into(), "not-the-password".into());
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_eventline-http-ingest"));
    command.env("EVENTLINE_KAFKA__BOOTSTRAP_SERVERS", &kafka.bootstrap_servers).kill_on_drop(true);
    for (key, value) in &kafka.properties {
        command.env(format!("EVENTLINE_KAFKA__PROPERTIES__{}", key.replace('.', "__").to_uppercase()), value);
    }
    let started = Instant::now();
    let out =
        tokio::time::timeout(Duration::from_secs(60), command.output()).await.expect("it exits").expect("it runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(&secure.bootstrap_servers()), "names the broker: {stderr}");
    assert!(stderr.contains("SASL authentication failed") && stderr.contains("SCRAM-SHA-512"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(8), "took {:?}", started.elapsed());
}
