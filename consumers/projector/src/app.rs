//! The projector as a [`ConsumerService`]: its tables, its handler, its query API, and the
//! generation of the read model its consumer follows. It is [`Rebuildable`]: `eventline rebuild
//! projector` builds its read model again side by side (see [`eventline_common::generations`]).
//!
//! The consumer applies events to the active generation's tables under that generation's group.
//! When another generation becomes active (a rebuild swapped, or a rollback), the shared
//! runtime sees it through [`ConsumerService::current_run`] within
//! [`WATCH_INTERVAL`](eventline_common::service::WATCH_INTERVAL), stops the consumer gracefully
//! and starts one for the new generation, which resumes from that group's own stored offsets.

use anyhow::Context as _;
use axum::Router;
use eventline_common::generations::GenerationTables;
use eventline_common::kafka::consumer::{ConsumerSettings, OffsetStore};
use eventline_common::service::{ConsumerRun, ConsumerService, Rebuildable, RunTarget, ServiceContext};

use crate::config::ProjectorSettings;
use crate::generations::ActiveStore;
use crate::handler::Projector;
use crate::http::{self, ApiState, Waiter};
use crate::metrics::ProjectorMetrics;
use crate::store::tables::{ProjectorTables, SERVICE};
use crate::store::Store;

/// The projector service: read models and their query API.
pub struct ProjectorService {
    read_models: ActiveStore,
    store: Store,
    metrics: ProjectorMetrics,
    api: ApiState,
}

impl ProjectorService {
    /// The store of the generation that was active when the projector was built.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The generations, and the store of whichever is active.
    pub fn read_models(&self) -> &ActiveStore {
        &self.read_models
    }
}

impl ConsumerService for ProjectorService {
    const NAME: &'static str = SERVICE;
    type Settings = ProjectorSettings;
    type Handler = Projector;

    fn default_settings() -> ProjectorSettings {
        ProjectorSettings::default()
    }

    fn validate(settings: &ProjectorSettings) -> anyhow::Result<()> {
        Ok(settings.check()?)
    }

    async fn build(ctx: &ServiceContext<ProjectorSettings>) -> anyhow::Result<Self> {
        let settings = &ctx.settings;
        Store::new(ctx.db.clone()).migrate().await.context("cannot migrate the projector's tables")?;
        let read_models = ActiveStore::new(Self::generations(ctx.db.clone(), &settings.consumer.group_id));
        let (_, store) = read_models.current().await.context("cannot read the active generation of the read model")?;
        let metrics = ProjectorMetrics::register(&ctx.metrics).context("cannot register the projector's metrics")?;
        let waiter = Waiter {
            offsets: OffsetStore::new(ctx.db.clone()),
            timeout: settings.wait_timeout,
            progress: ctx.progress.clone(),
            metrics: metrics.clone(),
        };
        let api = ApiState {
            read_models: read_models.clone(),
            waiter,
            default_page_size: settings.default_page_size,
            max_page_size: settings.max_page_size,
        };
        Ok(Self { read_models, store, metrics, api })
    }

    fn handler(&self, run: &ConsumerRun) -> Projector {
        let store = self.read_models.store_of(run.target.generation);
        self.metrics.following(run.target.generation);
        Projector::new(store, self.metrics.clone())
    }

    fn routes(&self) -> Router {
        http::router(self.api.clone())
    }

    /// The active generation and its group.
    async fn current_run(&self, _configured: &ConsumerSettings) -> anyhow::Result<RunTarget> {
        self.read_models
            .generations()
            .current_run()
            .await
            .context("cannot read the active generation of the read model")
    }
}

impl Rebuildable for ProjectorService {
    const TABLES: &'static dyn GenerationTables = &ProjectorTables;
}
