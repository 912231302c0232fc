//! Registering a service, and running one as a process of its own.
//!
//! A [`ServiceEntry`] is a service with its type erased, so one list (the `eventline` command's
//! `services.rs`) can name every consumer service: `eventline up` starts each, `eventline run
//! <name>` starts one, and the config's `[consumers.*]` tables are checked against the list.
//! A [`Rebuildable`] service's entry also carries a [`RebuildEntry`]: `eventline rebuild
//! <name>` and the admin API's generations routes, for every such service.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use anyhow::Context as _;
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use super::{prepare, ConsumerService, Platform, Rebuildable, ServiceSettings};
use crate::config::{ConfigSource, Section};
use crate::db::Database;
use crate::generations::{self, Generations, RebuildContext, RebuildEvent, RebuildSummary};
use crate::shutdown::{Signals, Supervisor};
use crate::telemetry::TelemetrySettings;

/// A consumer service in a list of services.
#[derive(Clone, Copy)]
pub struct ServiceEntry {
    /// [`ConsumerService::NAME`].
    pub name: &'static str,
    prepare: fn(Platform, ConfigSource) -> BoxFuture<'static, anyhow::Result<PreparedService>>,
    listen: fn(&ConfigSource) -> anyhow::Result<String>,
    rebuild: Option<RebuildEntry>,
}

impl ServiceEntry {
    pub const fn of<S: ConsumerService>() -> Self {
        Self { name: S::NAME, prepare: prepare_erased::<S>, listen: listen::<S>, rebuild: None }
    }

    /// A service whose tables can be rebuilt (`eventline rebuild <name>`).
    pub const fn rebuildable<S: Rebuildable>() -> Self {
        let rebuild = RebuildEntry { generations: generations_of::<S>, rebuild: rebuild_erased::<S> };
        Self { rebuild: Some(rebuild), ..Self::of::<S>() }
    }

    /// How to rebuild it, when it can be.
    pub fn rebuild(&self) -> Option<&RebuildEntry> {
        self.rebuild.as_ref()
    }

    /// Reads the service's settings from `source`, builds it over `platform` and binds it.
    pub fn prepare(
        &self,
        platform: Platform,
        source: ConfigSource,
    ) -> BoxFuture<'static, anyhow::Result<PreparedService>> {
        (self.prepare)(platform, source)
    }

    /// Where it listens with the settings in `source` (read and validated like a start does).
    pub fn listen(&self, source: &ConfigSource) -> anyhow::Result<String> {
        (self.listen)(source)
    }
}

impl std::fmt::Debug for ServiceEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceEntry").field("name", &self.name).finish()
    }
}

/// Rebuilding one service's tables, its type erased: [`generations`](crate::generations)
/// functions with the service's settings read from a [`ConfigSource`].
#[derive(Clone, Copy)]
pub struct RebuildEntry {
    generations: fn(Database, &ConfigSource) -> anyhow::Result<Generations>,
    rebuild: fn(
        Platform,
        ConfigSource,
        CancellationToken,
        OnRebuildEvent,
    ) -> BoxFuture<'static, anyhow::Result<RebuildSummary>>,
}

/// What hears of a rebuild's progress (the CLI prints it).
pub type OnRebuildEvent = Box<dyn FnMut(&RebuildEvent) + Send>;

impl RebuildEntry {
    /// The service's generations in `db` (its configured group read from `source`); for
    /// [`generations::status`] and [`generations::rollback`]. Call
    /// [`Generations::ensure`] first where the service may not have run since the upgrade.
    pub fn generations(&self, db: Database, source: &ConfigSource) -> anyhow::Result<Generations> {
        (self.generations)(db, source)
    }

    /// [`generations::rebuild`] with the service's settings read from `source`.
    pub fn rebuild(
        &self,
        platform: Platform,
        source: ConfigSource,
        stop: CancellationToken,
        on_event: OnRebuildEvent,
    ) -> BoxFuture<'static, anyhow::Result<RebuildSummary>> {
        (self.rebuild)(platform, source, stop, on_event)
    }
}

fn generations_of<S: Rebuildable>(db: Database, source: &ConfigSource) -> anyhow::Result<Generations> {
    let settings = source.consumer(S::NAME, S::default_settings())?;
    Ok(S::generations(db, &settings.consumer().group_id))
}

fn rebuild_erased<S: Rebuildable>(
    platform: Platform,
    source: ConfigSource,
    stop: CancellationToken,
    on_event: OnRebuildEvent,
) -> BoxFuture<'static, anyhow::Result<RebuildSummary>> {
    Box::pin(async move {
        let settings = source.consumer(S::NAME, S::default_settings())?;
        let Platform { kafka, db, registry_client, catalog, metrics: _ } = platform;
        let context = RebuildContext { settings, db, kafka, registry_client, catalog };
        Ok(generations::rebuild::<S>(context, stop, on_event).await?)
    })
}

/// A service ready to run, its type erased.
pub struct PreparedService {
    pub name: &'static str,
    pub local_addr: SocketAddr,
    pub drain_timeout: std::time::Duration,
    run: Box<dyn FnOnce(CancellationToken) -> BoxFuture<'static, anyhow::Result<()>> + Send>,
}

impl PreparedService {
    pub fn run(self, token: CancellationToken) -> impl Future<Output = anyhow::Result<()>> + Send {
        (self.run)(token)
    }
}

fn prepare_erased<S: ConsumerService>(
    platform: Platform,
    source: ConfigSource,
) -> Pin<Box<dyn Future<Output = anyhow::Result<PreparedService>> + Send>> {
    Box::pin(async move {
        let settings = source.consumer(S::NAME, S::default_settings())?;
        let drain_timeout = settings.drain_timeout();
        let prepared = prepare::<S>(platform, settings).await?;
        let local_addr = prepared.local_addr()?;
        Ok(PreparedService {
            name: S::NAME,
            local_addr,
            drain_timeout,
            run: Box::new(move |token| Box::pin(prepared.run(token))),
        })
    })
}

fn listen<S: ConsumerService>(source: &ConfigSource) -> anyhow::Result<String> {
    let settings = source.consumer(S::NAME, S::default_settings())?;
    S::validate(&settings)?;
    Ok(settings.listen().to_owned())
}

/// The arguments of a service's own binary.
#[derive(Debug, clap::Parser)]
struct ProcessArgs {
    /// TOML config file (default: `$EVENTLINE_CONFIG`, else none).
    #[arg(long)]
    config: Option<std::path::PathBuf>,
}

/// A service's own binary: `--config FILE`, telemetry, then [`main`]. Its `main.rs` is
/// `service::process(&ServiceEntry::of::<MyService>())`.
pub async fn process(entry: &ServiceEntry) -> anyhow::Result<()> {
    let args = <ProcessArgs as clap::Parser>::parse();
    let source = ConfigSource::load(args.config.as_deref()).context("cannot load the configuration")?;
    let telemetry: TelemetrySettings = source.section(Section::Telemetry)?;
    crate::telemetry::init(&telemetry);
    main(entry, source).await
}

/// Runs the service `entry` alone until Ctrl-C or SIGTERM, with the sections `telemetry`,
/// `kafka`, `schema_registry`, `database` and its own `[consumers.<name>]` of `source`.
pub async fn main(entry: &ServiceEntry, source: ConfigSource) -> anyhow::Result<()> {
    let mut signals = Signals::install();
    let starting = async {
        let platform = Platform::connect(&source).await?;
        entry.prepare(platform, source).await
    };
    let prepared = tokio::select! {
        prepared = starting => prepared?,
        () = signals.received() => {
            tracing::info!(service = entry.name, "stopped while starting");
            return Ok(());
        }
    };
    let mut supervisor = Supervisor::new(prepared.drain_timeout);
    let name = prepared.name;
    supervisor.spawn(name, prepared.run(supervisor.token()));
    supervisor
        .run_until(async move {
            signals.received().await;
            tracing::info!("shutdown signal received, draining");
        })
        .await
        .with_context(|| format!("{name} stopped with an error"))
}
