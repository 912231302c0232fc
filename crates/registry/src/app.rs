//! Building the registry and running it until the process stops.

use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use eventline_common::db::Database;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::RegistrySettings;
use crate::http::{self, AppState};
use crate::metrics::RegistryMetrics;
use crate::service::Registry;
use crate::store::Store;

/// The schema registry, ready to serve: migrations applied, metrics registered.
pub struct RegistryApp {
    state: AppState,
    metrics: RegistryMetrics,
    metrics_registry: prometheus::Registry,
}

impl RegistryApp {
    /// Applies the registry's migrations to `db` and registers its metrics in `metrics`.
    pub async fn build(
        settings: RegistrySettings,
        db: Database,
        metrics: prometheus::Registry,
    ) -> anyhow::Result<Self> {
        let store = Store::new(db);
        store.migrate().await.context("cannot apply the schema registry's database migrations")?;
        let registry_metrics =
            RegistryMetrics::register(&metrics).context("cannot register the schema registry's metrics")?;
        let state = AppState {
            registry: Arc::new(Registry::new(store, registry_metrics.clone())),
            write_token: Arc::new(settings.write_token),
            max_body_bytes: settings.max_body_bytes,
        };
        Ok(Self { state, metrics: registry_metrics, metrics_registry: metrics })
    }

    /// The REST API plus `/health/live`, `/health/ready` (the database answers) and `/metrics`.
    pub fn router(&self) -> Router {
        let registry = self.state.registry.clone();
        let health = eventline_common::http::health_router(move || {
            let registry = registry.clone();
            async move {
                if registry.is_ready().await {
                    Ok(())
                } else {
                    Err("the database does not answer".to_owned())
                }
            }
        });
        http::router(self.state.clone(), self.metrics.clone())
            .merge(health)
            .merge(eventline_common::metrics::router(self.metrics_registry.clone()))
    }

    /// Serves on `listener` until `token` is cancelled, then finishes in-flight requests.
    pub async fn run(self, listener: TcpListener, token: CancellationToken) -> anyhow::Result<()> {
        eventline_common::http::serve(listener, self.router(), token)
            .await
            .context("the schema registry's HTTP server failed")
    }
}
