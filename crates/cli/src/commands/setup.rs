//! `eventline setup`: prepare a cluster that `eventline up` does not manage (production, the
//! docker-compose stack): create the catalog's topics and register its schemas. Safe to re-run.

use std::path::Path;

use anyhow::Context;
use clap::Args;
use eventline_common::catalog::Catalog;
use eventline_common::config::Section;
use eventline_common::contracts::Contracts;
use eventline_common::kafka::admin::ensure_catalog_topics;
use eventline_common::kafka::connection::{check_connection, CONNECT_TIMEOUT};
use eventline_common::kafka::KafkaSettings;
use eventline_common::registry_client::{RegistryClient, SchemaRegistrySettings};

#[derive(Debug, Args)]
pub struct SetupArgs {
    /// Replication factor for topics it creates.
    #[arg(long, default_value_t = 1)]
    pub replication: i32,
}

pub async fn run(config_file: Option<&Path>, args: SetupArgs) -> anyhow::Result<()> {
    let source = crate::services::config(config_file)?;
    let kafka: KafkaSettings = source.section(Section::Kafka)?;
    let registry: SchemaRegistrySettings = source.section(Section::SchemaRegistry)?;
    let catalog = Catalog::embedded().context("the embedded catalog is invalid")?;
    check_connection(&kafka, CONNECT_TIMEOUT).await?;
    let created = ensure_catalog_topics(&kafka, &catalog, args.replication)
        .await
        .with_context(|| format!("cannot create topics on {}", kafka.bootstrap_servers))?;
    for topic in catalog.topics() {
        let state = if created.contains(&topic.name) { "created" } else { "exists" };
        println!("topic  {:<22} {:>3} partitions  {state}", topic.name, topic.partitions);
    }
    let client = RegistryClient::new(&registry)?;
    let contracts = Contracts::register(catalog, &client)
        .await
        .with_context(|| format!("cannot register schemas at {}", registry.url))?;
    for event in contracts.events() {
        println!("schema {:<22} id {:<5} {}", event.spec.name, event.schema_id, event.spec.subject());
    }
    Ok(())
}
