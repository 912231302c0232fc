//! `eventline setup` prepares a cluster it does not manage: topics and schemas, re-runnable.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use eventline_cli::commands::setup::{run, SetupArgs};
use eventline_common::catalog::Catalog;
use eventline_e2e::TestRegistry;
use eventline_testkit::{eventually, Broker};
use rdkafka::consumer::{BaseConsumer, Consumer as _};

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
    let catalog = Catalog::embedded().unwrap();
    let wanted: BTreeMap<String, usize> =
        catalog.topics().iter().map(|t| (t.name.clone(), t.partitions as usize)).collect();
    assert_eq!(catalog_topics_on(&broker, &catalog).await, wanted, "topics and their partition counts");
    let subjects: BTreeSet<String> = registry.client.subjects().await.unwrap().into_iter().collect();
    assert_eq!(subjects, catalog.events().map(|e| e.subject()).collect(), "subjects");
    let first = registry.client.latest("orders-com.eventline.commerce.OrderPlaced").await.unwrap();

    run(Some(&config), SetupArgs { replication: 1 }).await.unwrap();
    let again = registry.client.latest("orders-com.eventline.commerce.OrderPlaced").await.unwrap();
    assert_eq!((again.id, again.version), (first.id, first.version), "a re-run must not add versions");
    assert_eq!(catalog_topics_on(&broker, &catalog).await, wanted, "a re-run leaves the topics as they are");
}

/// The partition count of each catalog topic as the broker's metadata reports it, once it
/// names them all.
async fn catalog_topics_on(broker: &Broker, catalog: &Catalog) -> BTreeMap<String, usize> {
    eventually("the broker's metadata to name every catalog topic", Duration::from_secs(30), || async {
        let config = broker.kafka_settings().client_config();
        let all = tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = config.create().unwrap();
            let metadata = consumer.fetch_metadata(None, Duration::from_secs(10)).unwrap();
            metadata.topics().iter().map(|t| (t.name().to_owned(), t.partitions().len())).collect::<Vec<_>>()
        })
        .await
        .unwrap();
        let ours: BTreeMap<String, usize> = all.into_iter().filter(|(name, _)| catalog.topic(name).is_some()).collect();
        (ours.len() == catalog.topics().len()).then_some(ours)
    })
    .await
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
