//! Building the projector and running it (consumer and query API) until the process stops.

use anyhow::Context as _;
use axum::Router;
use eventline_common::catalog::Catalog;
use eventline_common::db::Database;
use eventline_common::kafka::consumer::{
    ConsumerMetrics, ConsumerProgress, ConsumerRuntime, OffsetStore,
};
use eventline_common::kafka::KafkaSettings;
use eventline_common::registry_client::RegistryClient;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::ProjectorSettings;
use crate::handler::Projector;
use crate::http::{self, ApiState, Waiter};
use crate::metrics::ProjectorMetrics;
use crate::store::Store;

/// The projector, ready to run: tables migrated, consumer built, metrics registered.
pub struct ProjectorApp {
    runtime: ConsumerRuntime<Projector>,
    api: ApiState,
    store: Store,
    metrics: prometheus::Registry,
}

impl ProjectorApp {
    /// Validates `settings`, applies the projector's and the offset table's migrations to `db`,
    /// and builds the consumer and the query API, registering metrics in `metrics`.
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
        let store = Store::new(db.clone());
        store
            .migrate()
            .await
            .context("cannot migrate the projector's tables")?;
        let projector_metrics = ProjectorMetrics::register(&metrics)
            .context("cannot register the projector's metrics")?;
        let consumer_metrics =
            ConsumerMetrics::new().context("cannot create the consumer metrics")?;
        consumer_metrics
            .register(&metrics)
            .context("cannot register the consumer metrics")?;
        let handler = Projector::new(store.clone(), projector_metrics.clone());
        let runtime = ConsumerRuntime::new(
            settings.consumer.clone(),
            kafka,
            registry_client,
            catalog,
            handler,
        )
        .with_offset_store(OffsetStore::new(db))
        .with_metrics(consumer_metrics);
        let waiter = Waiter {
            store: store.clone(),
            group: settings.consumer.group_id.clone(),
            timeout: settings.wait_timeout,
            progress: Some(runtime.progress()),
            metrics: projector_metrics,
        };
        let api = ApiState {
            store: store.clone(),
            waiter,
            default_page_size: settings.default_page_size,
            max_page_size: settings.max_page_size,
        };
        Ok(Self {
            runtime,
            api,
            store,
            metrics,
        })
    }

    /// This process's consumer progress.
    pub fn progress(&self) -> ConsumerProgress {
        self.runtime.progress()
    }

    pub fn store(&self) -> &Store {
        &self.store
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
        http::router(self.api.clone())
            .merge(health)
            .merge(eventline_common::metrics::router(self.metrics.clone()))
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
            let consumed = self.runtime.run(token.clone()).await;
            if consumed.is_err() {
                token.cancel();
            }
            consumed.context("the projector's consumer failed")
        };
        let (served, consumed) = tokio::join!(serving, consuming);
        self.store.database().close().await;
        consumed.and(served)
    }
}
