//! A consumer service in one file: implement [`ConsumerService`] (its name, settings, handler
//! and HTTP routes) and the shared runtime does the rest, once for every service.
//!
//! [`prepare`] and [`Prepared::run`] do what each service's `main` and `app` used to: read the
//! service's table of the config (`[consumers.<NAME>]`, defaults from
//! [`ConsumerService::default_settings`]), build the service over a [`Platform`] (Kafka, the
//! database, the registry client, the catalog, and the one Prometheus registry served on
//! `/metrics`), run the consumer runtime with the service's handler and its metrics registered in
//! that same registry, serve the service's routes with `/health/live`, `/health/ready` (the
//! database answers) and `/metrics`, and drain on shutdown. [`main`] runs one service as a process
//! of its own (`eventline run <NAME>`); `eventline up` runs every registered service in one
//! process (see [`ServiceEntry`]).
//!
//! A service whose consumer group changes while it runs (a read model rebuilt side by side and
//! swapped in) answers the group to follow from [`ConsumerService::current_run`]; the runtime
//! looks every [`WATCH_INTERVAL`] and moves its consumer, which resumes from that group's own
//! offsets.

mod entry;
mod run;

use std::fmt;
use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::catalog::Catalog;
use crate::config::{ConfigSource, Section};
use crate::db::{Database, DatabaseSettings};
use crate::effects::EffectLedger;
use crate::generations::{GenerationTables, Generations};
use crate::kafka::connection::{check_connection, CONNECT_TIMEOUT};
use crate::kafka::consumer::{ConsumerProgress, ConsumerSettings, Handler};
use crate::kafka::KafkaSettings;
use crate::registry_client::{RegistryClient, SchemaRegistrySettings};

pub use entry::{main, process, OnRebuildEvent, PreparedService, RebuildEntry, ServiceEntry};
pub use run::{prepare, Prepared, WATCH_INTERVAL};

/// A consumer of events with its own settings, handler and (optionally) HTTP routes.
pub trait ConsumerService: Sized + Send + Sync + 'static {
    /// The service's name: its config table `[consumers.<NAME>]`, `eventline run <NAME>`, logs.
    const NAME: &'static str;
    type Settings: ServiceSettings;
    type Handler: Handler;

    /// The settings when the config says nothing (they must work under `eventline up`).
    fn default_settings() -> Self::Settings;

    /// Refuses settings that cannot work, naming the key (before anything is built).
    fn validate(settings: &Self::Settings) -> anyhow::Result<()> {
        let _ = settings;
        Ok(())
    }

    /// Everything done once per process: migrations, metrics (in `ctx.metrics`), state.
    fn build(ctx: &ServiceContext<Self::Settings>) -> impl Future<Output = anyhow::Result<Self>> + Send;

    /// The handler for one run of the consumer (a new one when [`Self::current_run`] changes).
    fn handler(&self, run: &ConsumerRun) -> Self::Handler;

    /// Routes served beside `/health/*` and `/metrics`.
    fn routes(&self) -> Router {
        Router::new()
    }

    /// Tasks that run beside the consumer for as long as the service runs (an
    /// [`EffectWorker`](crate::effects::EffectWorker)); one failing stops the service.
    fn background(&self, token: CancellationToken) -> Vec<BoxFuture<'static, anyhow::Result<()>>> {
        let _ = token;
        Vec::new()
    }

    /// The consumer group to run under now: by default the configured one, for good. A service
    /// that answers another one later has its consumer moved there.
    fn current_run(&self, configured: &ConsumerSettings) -> impl Future<Output = anyhow::Result<RunTarget>> + Send {
        let target = RunTarget { group_id: configured.group_id.clone(), generation: 1 };
        async move { Ok(target) }
    }
}

/// A consumer service whose tables can be rebuilt side by side and swapped in (`eventline
/// rebuild <NAME>`; see [`generations`](crate::generations)): it says how to create and drop a
/// generation's tables, and its handler writes to the generation its run names
/// ([`ConsumerRun::target`]), checking under its write lock that the generation is still
/// writable ([`generations::state_of`](crate::generations::state_of)). Its `current_run`
/// follows the active generation, one line: `Self::generations(db, &configured.group_id)
/// .current_run().await` (see [`Generations::current_run`]); its `build` calls
/// [`generations::ensure`](crate::generations::ensure) once its own tables exist. Its consumer
/// keeps its offsets in the database (`offset_mode = "transactional"`), where a swap compares
/// them.
///
/// A rebuild runs the service's handler over every event again, into new tables: what the
/// handler does besides writing its tables must be idempotent per event (the effect ledger is:
/// an effect is recorded once per event, kind and recipient).
pub trait Rebuildable: ConsumerService {
    /// Its tables' DDL and write lock.
    const TABLES: &'static dyn GenerationTables;

    /// Its generations in `db` (`configured_group`: its configured consumer group).
    fn generations(db: Database, configured_group: &str) -> Generations {
        Generations::new(db, Self::NAME, configured_group, Self::TABLES)
    }
}

/// What every consumer service's settings carry besides its own: a struct with the fields
/// `listen: String`, `drain_timeout: Duration` and `consumer: ConsumerSettings` implements it with
/// [`service_settings!`](crate::service_settings).
pub trait ServiceSettings: Serialize + DeserializeOwned + Clone + fmt::Debug + Send + Sync + 'static {
    /// Where its HTTP routes, health and metrics listen.
    fn listen(&self) -> &str;
    /// Its consumer (group, topics, event types, offsets, retries).
    fn consumer(&self) -> &ConsumerSettings;
    /// How long a drain may take at shutdown.
    fn drain_timeout(&self) -> Duration;
}

/// Implements [`ServiceSettings`] for a struct with the fields `listen`, `drain_timeout` and
/// `consumer`.
#[macro_export]
macro_rules! service_settings {
    ($settings:ty) => {
        impl $crate::service::ServiceSettings for $settings {
            fn listen(&self) -> &str {
                &self.listen
            }
            fn consumer(&self) -> &$crate::kafka::consumer::ConsumerSettings {
                &self.consumer
            }
            fn drain_timeout(&self) -> ::std::time::Duration {
                self.drain_timeout
            }
        }
    };
}

/// The settings of a service that needs no settings of its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicSettings {
    pub listen: String,
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    pub consumer: ConsumerSettings,
}

impl BasicSettings {
    pub fn new(listen: impl Into<String>, consumer: ConsumerSettings) -> Self {
        Self { listen: listen.into(), drain_timeout: Duration::from_secs(30), consumer }
    }
}

crate::service_settings!(BasicSettings);

/// What the system gives every service: shared by all of them under `eventline up`.
#[derive(Clone)]
pub struct Platform {
    pub kafka: KafkaSettings,
    pub db: Database,
    pub registry_client: RegistryClient,
    pub catalog: Catalog,
    /// The registry served on `/metrics`: register the service's own metrics here.
    pub metrics: prometheus::Registry,
}

impl Platform {
    /// Reads `kafka`, `schema_registry` and `database` from `source`, checks that the brokers
    /// answer and connects to the database; a new, empty metrics registry.
    pub async fn connect(source: &ConfigSource) -> anyhow::Result<Self> {
        let kafka: KafkaSettings = source.section(Section::Kafka)?;
        let schema_registry: SchemaRegistrySettings = source.section(Section::SchemaRegistry)?;
        let database: DatabaseSettings = source.section(Section::Database)?;
        check_connection(&kafka, CONNECT_TIMEOUT).await?;
        let db = Database::connect(&database).await.context("cannot connect to the database")?;
        let registry_client = RegistryClient::new(&schema_registry)?;
        let catalog = Catalog::embedded().context("the embedded event catalog is invalid")?;
        Ok(Self { kafka, db, registry_client, catalog, metrics: prometheus::Registry::new() })
    }
}

/// What a service is built with: its settings and the [`Platform`].
#[derive(Clone)]
pub struct ServiceContext<S> {
    /// [`ConsumerService::NAME`].
    pub name: &'static str,
    pub settings: S,
    pub kafka: KafkaSettings,
    pub db: Database,
    pub registry_client: RegistryClient,
    pub catalog: Catalog,
    pub metrics: prometheus::Registry,
    /// The running consumer's progress (for read-your-writes waits), empty between runs.
    pub progress: CurrentProgress,
}

impl<S> ServiceContext<S> {
    pub fn new(name: &'static str, platform: Platform, settings: S) -> Self {
        let Platform { kafka, db, registry_client, catalog, metrics } = platform;
        Self { name, settings, kafka, db, registry_client, catalog, metrics, progress: CurrentProgress::default() }
    }

    /// The service's effect ledger (its table is created before the service is built).
    pub fn effect_ledger(&self) -> EffectLedger {
        EffectLedger::new(self.db.clone(), self.name)
    }
}

/// The group a consumer runs under, and which generation of the service's tables it feeds
/// (1 for a service that is never rebuilt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunTarget {
    pub group_id: String,
    pub generation: i64,
}

/// One run of the consumer, as its handler sees it.
#[derive(Debug, Clone)]
pub struct ConsumerRun {
    pub target: RunTarget,
    /// Cancelled when this run stops (shutdown, or the service moves to another group).
    pub stopping: CancellationToken,
}

/// The progress of the service's running consumer, replaced when it moves to another group;
/// empty while none runs.
#[derive(Debug, Clone, Default)]
pub struct CurrentProgress(Arc<RwLock<Option<ConsumerProgress>>>);

impl CurrentProgress {
    pub fn set(&self, progress: Option<ConsumerProgress>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = progress;
    }

    pub fn get(&self) -> Option<ConsumerProgress> {
        self.0.read().unwrap_or_else(PoisonError::into_inner).clone()
    }
}
