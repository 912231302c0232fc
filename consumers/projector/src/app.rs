//! Building the projector and running it (consumer and query API) until the process stops.
//!
//! The consumer follows the active generation of the read model: it applies events to that
//! generation's tables under that generation's group, looks every [`WATCH_INTERVAL`] whether
//! another generation became active (a rebuild swapped, or a rollback), and if so stops its
//! consumer gracefully and starts one for the new generation, which resumes from that group's
//! own stored offsets.

use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use eventline_common::catalog::Catalog;
use eventline_common::db::Database;
use eventline_common::kafka::consumer::{ConsumerMetrics, ConsumerRuntime, OffsetStore};
use eventline_common::kafka::KafkaSettings;
use eventline_common::registry_client::RegistryClient;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::ProjectorSettings;
use crate::generations::{ActiveStore, Generation, Generations};
use crate::handler::Projector;
use crate::http::{self, ApiState, CurrentProgress, Waiter};
use crate::metrics::ProjectorMetrics;
use crate::store::Store;

/// How often the running projector looks for a change of the active generation.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// The projector, ready to run: tables migrated, metrics registered.
pub struct ProjectorApp {
    settings: ProjectorSettings,
    kafka: KafkaSettings,
    registry_client: RegistryClient,
    catalog: Catalog,
    read_models: ActiveStore,
    store: Store,
    progress: CurrentProgress,
    projector_metrics: ProjectorMetrics,
    consumer_metrics: ConsumerMetrics,
    api: ApiState,
    metrics: prometheus::Registry,
}

impl ProjectorApp {
    /// Validates `settings`, applies the projector's and the offset table's migrations to `db`,
    /// and builds the query API, registering metrics in `metrics`.
    pub async fn build(
        settings: ProjectorSettings,
        db: Database,
        kafka: KafkaSettings,
        registry_client: RegistryClient,
        catalog: Catalog,
        metrics: prometheus::Registry,
    ) -> anyhow::Result<Self> {
        settings.validate()?;
        settings.consumer.validate()?;
        Store::new(db.clone()).migrate().await.context("cannot migrate the projector's tables")?;
        let read_models = ActiveStore::new(Generations::new(db.clone(), settings.consumer.group_id.clone()));
        let (_, store) = read_models.current().await.context("cannot read the active generation of the read model")?;
        let projector_metrics =
            ProjectorMetrics::register(&metrics).context("cannot register the projector's metrics")?;
        let consumer_metrics = ConsumerMetrics::new().context("cannot create the consumer metrics")?;
        consumer_metrics.register(&metrics).context("cannot register the consumer metrics")?;
        let progress = CurrentProgress::default();
        let waiter = Waiter {
            offsets: OffsetStore::new(db),
            timeout: settings.wait_timeout,
            progress: progress.clone(),
            metrics: projector_metrics.clone(),
        };
        let api = ApiState {
            read_models: read_models.clone(),
            waiter,
            default_page_size: settings.default_page_size,
            max_page_size: settings.max_page_size,
        };
        Ok(Self {
            settings,
            kafka,
            registry_client,
            catalog,
            read_models,
            store,
            progress,
            projector_metrics,
            consumer_metrics,
            api,
            metrics,
        })
    }

    /// The store of the generation that was active when the projector was built.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The generations, and the store of whichever is active.
    pub fn read_models(&self) -> &ActiveStore {
        &self.read_models
    }

    /// The query API, `/health/live`, `/health/ready` (the database answers) and `/metrics`.
    pub fn router(&self) -> Router {
        let db = self.store.database().clone();
        let health = eventline_common::http::health_router(move || {
            let db = db.clone();
            async move {
                if db.is_ready().await {
                    Ok(())
                } else {
                    Err("the read model database does not answer".to_owned())
                }
            }
        });
        http::router(self.api.clone()).merge(health).merge(eventline_common::metrics::router(self.metrics.clone()))
    }

    /// Serves the query API on `listener` and runs the consumer until `token` is cancelled;
    /// either one failing stops the other.
    pub async fn run(self, listener: TcpListener, token: CancellationToken) -> anyhow::Result<()> {
        let router = self.router();
        let stop_on_failure = token.clone();
        let serving = async {
            let served = eventline_common::http::serve(listener, router, token.clone()).await;
            if served.is_err() {
                stop_on_failure.cancel();
            }
            served.context("the projector's query API failed")
        };
        let consuming = async {
            let consumed = self.follow_active_generation(token.clone()).await;
            if consumed.is_err() {
                token.cancel();
            }
            consumed
        };
        let (served, consumed) = tokio::join!(serving, consuming);
        self.store.database().close().await;
        consumed.and(served)
    }

    /// Runs a consumer for the active generation, and a new one whenever another generation
    /// becomes active, until `token` is cancelled.
    async fn follow_active_generation(&self, token: CancellationToken) -> anyhow::Result<()> {
        let generations = self.read_models.generations();
        let mut generation =
            generations.active().await.context("cannot read the active generation of the read model")?;
        loop {
            let stopping = token.child_token();
            let running = self.consume(generation.clone(), stopping.clone());
            tokio::pin!(running);
            let mut watch = tokio::time::interval(WATCH_INTERVAL);
            watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let next = loop {
                tokio::select! {
                    consumed = &mut running => {
                        self.progress.set(None);
                        return consumed;
                    }
                    _ = watch.tick() => match generations.active().await {
                        Ok(active) if active.generation != generation.generation => break active,
                        Ok(_) => {}
                        Err(error) => tracing::warn!(
                            error = %format!("{error:#}"),
                            "cannot read the active generation; looking again"
                        ),
                    },
                }
            };
            tracing::info!(
                from = generation.generation,
                to = next.generation,
                group = %next.group_id,
                "the active generation of the read model changed; switching the consumer"
            );
            stopping.cancel();
            running.await?;
            self.progress.set(None);
            generation = next;
        }
    }

    /// Applies events to `generation` under its group until `stopping` is cancelled.
    async fn consume(&self, generation: Generation, stopping: CancellationToken) -> anyhow::Result<()> {
        let store = self.read_models.store_of(generation.generation);
        let db = store.database().clone();
        let handler = Projector::new(store, self.projector_metrics.clone());
        let mut settings = self.settings.consumer.clone();
        settings.group_id = generation.group_id.clone();
        let runtime = ConsumerRuntime::new(
            settings,
            self.kafka.clone(),
            self.registry_client.clone(),
            self.catalog.clone(),
            handler,
        )
        .with_offset_store(OffsetStore::new(db))
        .with_metrics(self.consumer_metrics.clone());
        self.progress.set(Some(runtime.progress()));
        self.projector_metrics.following(generation.generation);
        tracing::info!(
            generation = generation.generation,
            group = %generation.group_id,
            tables = %generation.table_prefix,
            "applying events to the active generation"
        );
        runtime.run(stopping).await.with_context(|| {
            format!(
                "the projector's consumer (generation {}, group {}) failed",
                generation.generation, generation.group_id
            )
        })
    }
}
