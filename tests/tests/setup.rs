//! `eventline setup` prepares a cluster it does not manage: topics and schemas, re-runnable.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use eventline_cli::commands::setup::{run, SetupArgs};
use eventline_common::kafka::admin::topic_names;
use eventline_e2e::TestRegistry;
use eventline_testkit::Broker;

#[tokio::test]
async fn setup_creates_topics_and_registers_schemas_and_can_run_again() {
    let broker = Broker::start().await;
    let registry = TestRegistry::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("eventline.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbootstrap_servers = \"{}\"\n[schema_registry]\nurl = \"{}\"\n",
            broker.bootstrap_servers(),
            registry.url
        ),
    )
    .unwrap();
    run(Some(&config), SetupArgs { replication: 1 }).await.unwrap();
    let topics = topic_names(&broker.kafka_settings()).await.unwrap();
    for topic in ["customers", "orders", "payments"] {
        assert!(topics.contains(&topic.to_owned()), "{topic} missing from {topics:?}");
    }
    let subjects = registry.client.subjects().await.unwrap();
    assert_eq!(subjects.len(), 9, "{subjects:?}");
    let first = registry.client.latest("orders-com.eventline.commerce.OrderPlaced").await.unwrap();

    run(Some(&config), SetupArgs { replication: 1 }).await.unwrap();
    let again = registry.client.latest("orders-com.eventline.commerce.OrderPlaced").await.unwrap();
    assert_eq!((again.id, again.version), (first.id, first.version), "a re-run must not add versions");
}

#[tokio::test]
async fn setup_against_an_unreachable_registry_fails_with_a_clear_error() {
    let broker = Broker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("eventline.toml");
    let port = eventline_testkit::free_port();
    std::fs::write(
        &config,
        format!("[kafka]\nbootstrap_servers = \"{}\"\n[schema_registry]\nurl = \"http://127.0.0.1:{port}\"\ntimeout = \"2s\"\n", broker.bootstrap_servers()),
    )
    .unwrap();
    let err = run(Some(&config), SetupArgs { replication: 1 }).await.unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains(&format!("127.0.0.1:{port}")) && text.contains("unreachable"), "{text}");
}
