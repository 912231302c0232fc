//! Building the ingest service and running it until the process stops.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use eventline_common::db::Database;
use eventline_common::kafka::KafkaSettings;
use eventline_common::publish::Publisher;
use eventline_common::registry_client::RegistryClient;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::Authenticator;
use crate::broker::BrokerProbe;
use crate::config::IngestSettings;
use crate::http::{self, AppState};
use crate::idempotency::IdempotencyStore;
use crate::ingest::{error_chain, Ingest};
use crate::metrics::IngestMetrics;
use crate::rate_limit::RateLimiter;

/// How long a readiness probe waits for the broker.
const BROKER_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The ingest service, ready to serve: migrations applied, metrics registered, keys loaded.
pub struct IngestApp {
    state: AppState,
    metrics: IngestMetrics,
    metrics_registry: prometheus::Registry,
    probe: BrokerProbe,
    registry: RegistryClient,
    db: Database,
    purge_interval: Duration,
    drain_timeout: Duration,
}

impl IngestApp {
    /// `publisher` should be built with [`IngestSettings::producer_settings`], so a send gives up
    /// after `broker_wait`. `kafka` is used for readiness checks (a metadata request).
    pub async fn build(
        settings: IngestSettings,
        kafka: &KafkaSettings,
        publisher: Publisher,
        db: Database,
        registry: RegistryClient,
        metrics: prometheus::Registry,
    ) -> anyhow::Result<Self> {
        // A claim older than this belongs to a request that can no longer be running.
        let stale_after = settings.broker_wait * 2 + Duration::from_secs(30);
        let store = IdempotencyStore::new(db.clone(), settings.idempotency_window, stale_after);
        store.migrate().await.context("cannot apply the ingest service's database migrations")?;
        let ingest_metrics =
            IngestMetrics::register(&metrics).context("cannot register the ingest service's metrics")?;
        let auth = Authenticator::from_settings(&settings.auth).context("invalid ingest.auth settings")?;
        let probe = BrokerProbe::new(kafka).context("cannot create the Kafka client for readiness checks")?;
        let ingest = Ingest::new(publisher, store, ingest_metrics.clone(), settings.broker_wait);
        let state = AppState {
            ingest: Arc::new(ingest),
            auth: auth.map(Arc::new),
            limiter: RateLimiter::from_settings(&settings.rate_limit).map(Arc::new),
            max_batch: settings.max_batch,
            max_body_bytes: settings.max_body_bytes,
            source: settings.source.as_str().into(),
            broker_wait: settings.broker_wait,
            retry_after: settings.broker_wait.max(Duration::from_secs(1)),
        };
        Ok(Self {
            state,
            metrics: ingest_metrics,
            metrics_registry: metrics,
            probe,
            registry,
            db,
            purge_interval: settings.idempotency_purge_interval,
            drain_timeout: settings.drain_timeout,
        })
    }

    /// The API plus `/health/live`, `/health/ready` (broker, schema registry and database
    /// answer) and `/metrics`.
    pub fn router(&self) -> Router {
        let (probe, registry, db) = (self.probe.clone(), self.registry.clone(), self.db.clone());
        let health = eventline_common::http::health_router(move || {
            let (probe, registry, db) = (probe.clone(), registry.clone(), db.clone());
            async move {
                probe.check(BROKER_PROBE_TIMEOUT).await?;
                if !registry.is_ready().await {
                    return Err(format!("the schema registry at {} does not answer", registry.url()));
                }
                if !db.is_ready().await {
                    return Err("the database does not answer".to_owned());
                }
                Ok(())
            }
        });
        http::router(self.state.clone(), self.metrics.clone())
            .merge(health)
            .merge(eventline_common::metrics::router(self.metrics_registry.clone()))
    }

    /// Serves on `listener` until `token` is cancelled, purging expired idempotency records
    /// meanwhile; then finishes in-flight requests and flushes the producer.
    pub async fn run(self, listener: TcpListener, token: CancellationToken) -> anyhow::Result<()> {
        let purge = tokio::spawn(purge_expired(self.state.ingest.clone(), self.purge_interval, token.clone()));
        let service = self.router().into_make_service_with_connect_info::<SocketAddr>();
        let served = axum::serve(eventline_common::http::without_nagle(listener), service)
            .with_graceful_shutdown(token.clone().cancelled_owned())
            .await
            .context("the ingest service's HTTP server failed");
        token.cancel();
        let _ = purge.await;
        let producer = self.state.ingest.publisher().producer().clone();
        let drain = self.drain_timeout;
        let flushed = tokio::task::spawn_blocking(move || producer.flush(drain)).await;
        if let Ok(Err(error)) = flushed {
            tracing::warn!(error = %error_chain(&error), "the producer did not flush every event before shutdown");
        }
        served
    }
}

async fn purge_expired(ingest: Arc<Ingest>, every: Duration, token: CancellationToken) {
    let mut ticks = tokio::time::interval(every.max(Duration::from_secs(1)));
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            _ = ticks.tick() => match ingest.store().purge_expired().await {
                Ok(0) => {}
                Ok(purged) => tracing::debug!(purged, "expired idempotency records deleted"),
                Err(error) => tracing::warn!(error = %error_chain(&error), "cannot delete expired idempotency records"),
            },
        }
    }
}
