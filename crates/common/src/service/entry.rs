//! Registering a service, and running one as a process of its own.
//!
//! A [`ServiceEntry`] is a service with its type erased, so one list (the `eventline` command's
//! `services.rs`) can name every consumer service: `eventline up` starts each, `eventline run
//! <name>` starts one, and the config's `[consumers.*]` tables are checked against the list.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use anyhow::Context as _;
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use super::{prepare, ConsumerService, Platform, ServiceSettings};
use crate::config::{ConfigSource, Section};
use crate::shutdown::{Signals, Supervisor};
use crate::telemetry::TelemetrySettings;

/// A consumer service in a list of services.
#[derive(Clone, Copy)]
pub struct ServiceEntry {
    /// [`ConsumerService::NAME`].
    pub name: &'static str,
    prepare: fn(Platform, ConfigSource) -> BoxFuture<'static, anyhow::Result<PreparedService>>,
    listen: fn(&ConfigSource) -> anyhow::Result<String>,
}

impl ServiceEntry {
    pub const fn of<S: ConsumerService>() -> Self {
        Self { name: S::NAME, prepare: prepare_erased::<S>, listen: listen::<S> }
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
