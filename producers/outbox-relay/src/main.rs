//! `eventline-outbox-relay`: the outbox relay as its own process.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use eventline_common::catalog::Catalog;
use eventline_common::config::{ConfigSource, Section};
use eventline_common::contracts::Contracts;
use eventline_common::kafka::connection::{check_connection, CONNECT_TIMEOUT};
use eventline_common::kafka::producer::{EventProducer, ProducerSettings};
use eventline_common::kafka::KafkaSettings;
use eventline_common::publish::Publisher;
use eventline_common::registry_client::{RegistryClient, SchemaRegistrySettings};
use eventline_common::shutdown::Supervisor;
use eventline_common::telemetry::{self, TelemetrySettings};
use eventline_outbox_relay::{OutboxRelay, OutboxRelaySettings};

/// Publishes an upstream PostgreSQL outbox table to Kafka. Settings: built-in defaults, then the
/// config file, then `EVENTLINE_<SECTION>__<KEY>` variables (sections `telemetry`, `kafka`,
/// `schema_registry`, `outbox_relay`).
#[derive(Debug, Parser)]
#[command(name = "eventline-outbox-relay", version)]
struct Args {
    /// TOML config file (default: `$EVENTLINE_CONFIG`, else none).
    #[arg(long)]
    config: Option<PathBuf>,
}

/// mimalloc instead of glibc's allocator: HTTP ingest measured ~30% more events/s with it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let source = ConfigSource::load(args.config.as_deref()).context("cannot load the configuration")?;
    let telemetry_settings: TelemetrySettings = source.section(Section::Telemetry)?;
    telemetry::init(&telemetry_settings);
    let kafka: KafkaSettings = source.section(Section::Kafka)?;
    let schema_registry: SchemaRegistrySettings = source.section(Section::SchemaRegistry)?;
    let settings: OutboxRelaySettings = source.section(Section::OutboxRelay)?;
    settings.validate()?; // a relay without a database, or with a bad table name, stops here
    check_connection(&kafka, CONNECT_TIMEOUT).await?;

    let client = RegistryClient::new(&schema_registry)?;
    let catalog = Catalog::embedded().context("the embedded event catalog is invalid")?;
    let contracts = Contracts::register(catalog, &client)
        .await
        .with_context(|| format!("cannot register the catalog's schemas at {}", client.url()))?;
    let producer = EventProducer::new(&kafka, &ProducerSettings::default())?;
    let publisher = Publisher::new(producer, Arc::new(contracts));
    let relay = OutboxRelay::build(settings.clone(), publisher, prometheus::Registry::new()).await?;

    let listener = eventline_common::http::bind(&settings.listen, "outbox relay").await?;
    let mut supervisor = Supervisor::new(settings.drain_timeout);
    supervisor.spawn("outbox-relay-http", eventline_common::http::serve(listener, relay.router(), supervisor.token()));
    supervisor.spawn("outbox-relay", relay.run(supervisor.token()));
    supervisor.run_until_stopped().await
}
