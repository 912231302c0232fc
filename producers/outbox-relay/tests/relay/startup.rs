//! Misconfiguration stops the relay at start-up with a message that says what to do.

use std::sync::Arc;

use eventline_common::avro::SchemaId;
use eventline_common::catalog::Catalog;
use eventline_common::config::Secret;
use eventline_common::contracts::Contracts;
use eventline_common::kafka::producer::{EventProducer, ProducerSettings};
use eventline_common::kafka::KafkaSettings;
use eventline_common::publish::Publisher;
use eventline_outbox_relay::{OutboxRelay, OutboxRelaySettings};
use eventline_testkit::PgDatabase;

#[tokio::test]
async fn the_binary_without_a_database_url_says_how_to_configure_it() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_eventline-outbox-relay"))
        .env_remove("EVENTLINE_CONFIG")
        .env_remove("EVENTLINE_OUTBOX_RELAY__DATABASE_URL")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("EVENTLINE_OUTBOX_RELAY__DATABASE_URL"), "{stderr}");
}

#[tokio::test]
async fn a_missing_outbox_table_is_named_with_the_way_to_create_it() {
    let db = PgDatabase::create().await;
    let contracts = Contracts::with_ids(Catalog::embedded().unwrap(), |_| SchemaId(1));
    // No broker is contacted before the first row.
    let producer =
        EventProducer::new(&KafkaSettings::for_bootstrap("127.0.0.1:1"), &ProducerSettings::default()).unwrap();
    let settings =
        OutboxRelaySettings { database_url: Secret::new(db.url()), table: "shop_outbox".into(), ..Default::default() };
    let error =
        OutboxRelay::build(settings, Publisher::new(producer, Arc::new(contracts)), prometheus::Registry::new())
            .await
            .err()
            .unwrap();
    let text = format!("{error:#}");
    assert!(text.contains("shop_outbox") && text.contains("sql/outbox.sql") && text.contains("create_table"), "{text}");
}
