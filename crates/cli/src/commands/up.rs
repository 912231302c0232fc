//! `eventline up`: the whole system in one process, with embedded defaults.
//!
//! Starts (unless told otherwise) a local Apache Kafka broker with its log on disk, creates the
//! catalog's topics, runs the schema registry over the configured database (SQLite by default),
//! registers the catalog's schemas, starts HTTP ingest, every consumer service in
//! [`CONSUMERS`](crate::services::CONSUMERS), the admin API and (when configured) the outbox relay,
//! and then runs until Ctrl-C / SIGTERM, draining on the way out.

use std::path::Path;

use anyhow::{bail, Context};
use clap::Args;
use eventline_common::catalog::Catalog;
use eventline_common::config::{ConfigSource, Secret, Section};
use eventline_common::contracts::Contracts;
use eventline_common::db::{redact_url, Database, DatabaseSettings};
use eventline_common::kafka::admin::ensure_catalog_topics;
use eventline_common::kafka::connection::{check_connection, CONNECT_TIMEOUT};
use eventline_common::kafka::local_broker::{LocalBroker, KAFKA_VERSION};
use eventline_common::kafka::producer::{EventProducer, ProducerSettings};
use eventline_common::kafka::KafkaSettings;
use eventline_common::publish::Publisher;
use eventline_common::registry_client::{RegistryClient, SchemaRegistrySettings};
use eventline_common::service::{ConsumerService as _, Platform, PreparedService};
use eventline_common::shutdown::Supervisor;
use eventline_common::telemetry::{self, TelemetrySettings};
use eventline_http_ingest::{IngestApp, IngestSettings};
use eventline_outbox_relay::{OutboxRelay, OutboxRelaySettings};
use eventline_projector::{ProjectorService, ProjectorSettings};
use eventline_registry::{RegistryApp, RegistrySettings};

use crate::admin::{self, AdminSettings, AdminState};
use crate::settings::UpSettings;

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Use the brokers in `kafka.bootstrap_servers` instead of starting a local Apache Kafka.
    #[arg(long)]
    pub external_broker: bool,
}

/// Everything `up` reads from config.
struct UpConfig {
    telemetry: TelemetrySettings,
    kafka: KafkaSettings,
    database: DatabaseSettings,
    registry: RegistrySettings,
    schema_registry: SchemaRegistrySettings,
    ingest: IngestSettings,
    outbox_relay: OutboxRelaySettings,
    projector: ProjectorSettings,
    admin: AdminSettings,
    up: UpSettings,
    source: ConfigSource,
}

impl UpConfig {
    fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let source = crate::services::config(file)?;
        Ok(Self {
            telemetry: source.section(Section::Telemetry)?,
            kafka: source.section(Section::Kafka)?,
            database: source.section(Section::Database)?,
            registry: source.section(Section::Registry)?,
            schema_registry: source.section(Section::SchemaRegistry)?,
            ingest: source.section(Section::Ingest)?,
            outbox_relay: source.section(Section::OutboxRelay)?,
            projector: source.consumer(ProjectorService::NAME, ProjectorSettings::default())?,
            admin: source.section(Section::Admin)?,
            up: source.section(Section::Up)?,
            source,
        })
    }
}

pub async fn run(config_file: Option<&Path>, args: UpArgs) -> anyhow::Result<()> {
    let mut config = UpConfig::load(config_file)?;
    if args.external_broker {
        config.up.start_broker = false;
    }
    telemetry::init(&config.telemetry);
    let catalog = Catalog::embedded().context("the embedded event catalog is invalid")?;
    let mut supervisor = Supervisor::new(config.up.drain_deadline);

    let broker = if config.up.start_broker {
        let port = local_port(&config.kafka.bootstrap_servers)?;
        let dir = config.up.data_dir.join("kafka");
        println!("starting Apache Kafka {KAFKA_VERSION} on 127.0.0.1:{port} (log in {})", dir.display());
        let broker = LocalBroker::start(port, &dir, config.up.broker_ready_timeout).await?;
        println!("Apache Kafka answered after {:.1?}", broker.started_in());
        Some(broker)
    } else {
        None
    };

    check_connection(&config.kafka, CONNECT_TIMEOUT).await?;
    let created = ensure_catalog_topics(&config.kafka, &catalog, 1)
        .await
        .with_context(|| format!("cannot create the catalog's topics on {}", config.kafka.bootstrap_servers))?;

    let metrics = prometheus::Registry::new();
    let database = Database::connect(&config.database).await?;
    let registry = RegistryApp::build(config.registry.clone(), database.clone(), metrics.clone()).await?;
    let listener = eventline_common::http::bind(&config.registry.listen, "schema registry").await?;
    supervisor.spawn("schema-registry", registry.run(listener, supervisor.token()));

    let client = RegistryClient::new(&config.schema_registry)?;
    let contracts = Contracts::register(catalog.clone(), &client)
        .await
        .with_context(|| format!("cannot register the catalog's schemas at {}", client.url()))?;

    let contracts = std::sync::Arc::new(contracts);
    let publisher = Publisher::new(EventProducer::new(&config.kafka, &ProducerSettings::default())?, contracts.clone());
    let ingest_publisher =
        Publisher::new(EventProducer::new(&config.kafka, &config.ingest.producer_settings())?, contracts.clone());
    let ingest = IngestApp::build(
        config.ingest.clone(),
        &config.kafka,
        ingest_publisher,
        database.clone(),
        client.clone(),
        metrics.clone(),
    )
    .await?;
    let listener = eventline_common::http::bind(&config.ingest.listen, "HTTP ingest").await?;
    supervisor.spawn("http-ingest", ingest.run(listener, supervisor.token()));

    let platform = Platform {
        kafka: config.kafka.clone(),
        db: database.clone(),
        registry_client: client.clone(),
        catalog: catalog.clone(),
        metrics: metrics.clone(),
    };
    let mut consumers: Vec<(&'static str, std::net::SocketAddr)> = Vec::new();
    for entry in crate::services::CONSUMERS {
        let prepared: PreparedService = entry
            .prepare(platform.clone(), config.source.clone())
            .await
            .with_context(|| format!("cannot start the consumer service {}", entry.name))?;
        consumers.push((prepared.name, prepared.local_addr));
        supervisor.spawn(prepared.name, prepared.run(supervisor.token()));
    }

    let admin_token = admin_token(&config.admin, &config.up.data_dir)?;
    let admin_state = AdminState::new(
        admin_token,
        config.kafka.clone(),
        config.database.clone(),
        config.schema_registry.clone(),
        config.source.clone(),
        catalog.clone(),
    )?;
    let listener = eventline_common::http::bind(&config.admin.listen, "admin API").await?;
    supervisor
        .spawn("admin-api", eventline_common::http::serve(listener, admin::router(admin_state), supervisor.token()));

    if config.outbox_relay.is_enabled() {
        let relay = OutboxRelay::build(config.outbox_relay.clone(), publisher.clone(), metrics.clone()).await?;
        supervisor.spawn("outbox-relay", relay.run(supervisor.token()));
    }

    // The broker stops last, after every service drained (their final commits need it); while
    // the system runs, a crash of the broker stops everything.
    let broker = broker.map(|b| std::sync::Arc::new(tokio::sync::Mutex::new(b)));
    if let Some(broker) = broker.clone() {
        let token = supervisor.token();
        supervisor.spawn("kafka-broker-watch", async move {
            loop {
                tokio::select! {
                    () = token.cancelled() => return Ok(()),
                    () = tokio::time::sleep(std::time::Duration::from_millis(500)) => {
                        if let Some(error) = broker.lock().await.try_exited() {
                            return Err(error.into());
                        }
                    }
                }
            }
        });
    }

    print_banner(&config, &catalog, &contracts, &created, &consumers);
    let outcome = supervisor.run_until_stopped().await;
    // Every Kafka client goes before the broker does, so none of them logs the broker leaving.
    drop(publisher);
    database.close().await;
    if let Some(broker) = broker {
        broker.lock().await.stop().await;
    }
    outcome
}

fn print_banner(
    config: &UpConfig,
    catalog: &Catalog,
    contracts: &Contracts,
    created: &[String],
    consumers: &[(&str, std::net::SocketAddr)],
) {
    let topics: Vec<String> = catalog
        .topics()
        .iter()
        .map(|t| {
            let new = if created.contains(&t.name) { ", new" } else { "" };
            format!("{} ({} partitions{new})", t.name, t.partitions)
        })
        .collect();
    println!();
    println!("Eventline is up.");
    println!("  kafka            {}", config.kafka.bootstrap_servers);
    println!("  schema registry  {}", config.schema_registry.url);
    println!("  database         {}", redact_url(&config.database.url));
    println!("  topics           {}", topics.join(", "));
    println!("  schemas          {} registered", contracts.events().count());
    println!("  http ingest      http://{}/v1/events (OpenAPI at /openapi.json)", config.ingest.listen);
    println!("  read models      http://{}/v1/orders/{{id}}, /v1/customers/{{id}}[/orders]", config.projector.listen);
    for (name, addr) in consumers {
        println!("  consumer         {name:<16} http://{addr}/metrics");
    }
    let token_from = if config.admin.token.is_empty() {
        format!("token in {}", admin_token_file(&config.up.data_dir).display())
    } else {
        "token: admin.token".to_owned()
    };
    println!("  admin API        http://{}/admin/v1/groups ({token_from})", config.admin.listen);
    if config.outbox_relay.is_enabled() {
        println!("  outbox relay     on, table {}", config.outbox_relay.table);
    } else {
        println!("  outbox relay     off (set outbox_relay.database_url to an upstream PostgreSQL)");
    }
    println!("Press Ctrl-C to stop.");
}

fn admin_token_file(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("admin-token")
}

/// The configured admin token, or (locally, when none is configured) the one in
/// `<data_dir>/admin-token`, made on first use and readable by this user only.
fn admin_token(settings: &AdminSettings, data_dir: &Path) -> anyhow::Result<Secret> {
    if !settings.token.is_empty() {
        return Ok(settings.token.clone());
    }
    let file = admin_token_file(data_dir);
    if let Ok(existing) = std::fs::read_to_string(&file) {
        if !existing.trim().is_empty() {
            return Ok(Secret::new(existing.trim()));
        }
    }
    std::fs::create_dir_all(data_dir).with_context(|| format!("cannot create {}", data_dir.display()))?;
    let token = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut out = options.open(&file).with_context(|| format!("cannot write {}", file.display()))?;
    std::io::Write::write_all(&mut out, token.as_bytes())
        .with_context(|| format!("cannot write {}", file.display()))?;
    Ok(Secret::new(token))
}

/// The port of a `127.0.0.1:PORT` / `localhost:PORT` bootstrap address, for the local broker.
fn local_port(bootstrap: &str) -> anyhow::Result<u16> {
    let first = bootstrap.split(',').next().unwrap_or_default().trim();
    let Some((host, port)) = first.rsplit_once(':') else {
        bail!("kafka.bootstrap_servers `{bootstrap}` has no port");
    };
    if !matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
        bail!("a local broker listens on loopback only, but kafka.bootstrap_servers is `{bootstrap}`; use --external-broker to connect to it instead");
    }
    port.parse().with_context(|| format!("kafka.bootstrap_servers `{bootstrap}` has an invalid port"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_local_port_comes_from_a_loopback_bootstrap_address() {
        assert_eq!(super::local_port("127.0.0.1:9092").ok(), Some(9092));
        assert_eq!(super::local_port("localhost:19092,other:1").ok(), Some(19092));
        assert!(super::local_port("kafka:9092").is_err());
        assert!(super::local_port("127.0.0.1").is_err());
        assert!(super::local_port("127.0.0.1:http").is_err());
    }
}
