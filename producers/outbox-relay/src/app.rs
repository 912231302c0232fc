//! Building the relay and running it until the process stops.

use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use eventline_common::db::redact_url;
use eventline_common::publish::Publisher;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::{OutboxRelaySettings, RelayConfig};
use crate::metrics::RelayMetrics;
use crate::relay::Relay;
use crate::store::Store;
use crate::wake;

/// The outbox relay, ready to run: connected to the upstream database, table checked, metrics
/// registered.
pub struct OutboxRelay {
    relay: Relay,
    store: Store,
    config: RelayConfig,
    metrics: prometheus::Registry,
}

impl OutboxRelay {
    /// Connects to `settings.database_url` (creating the outbox table there when
    /// `create_table` is set), checks the table and registers the relay's metrics in `metrics`.
    /// Fails when the relay is disabled (no `database_url`): check
    /// [`OutboxRelaySettings::is_enabled`] first.
    pub async fn build(
        settings: OutboxRelaySettings,
        publisher: Publisher,
        metrics: prometheus::Registry,
    ) -> anyhow::Result<Self> {
        let config = settings.validate()?;
        let store = Store::open(&config.database_url, &config.table, &config.channel, config.create_table)
            .await
            .with_context(|| format!("cannot open the outbox table {}", config.table))?;
        let relay_metrics = RelayMetrics::register(&metrics).context("cannot register the outbox relay's metrics")?;
        tracing::info!(
            database = %redact_url(config.database_url.expose()),
            table = %config.table,
            channel = %config.channel,
            "outbox relay ready"
        );
        let relay = Relay::new(store.clone(), publisher, relay_metrics, config.clone());
        Ok(Self { relay, store, config, metrics })
    }

    /// `/health/live`, `/health/ready` (the upstream database answers) and `/metrics`.
    pub fn router(&self) -> Router {
        let store = self.store.clone();
        let health = eventline_common::http::health_router(move || {
            let store = store.clone();
            async move {
                if store.is_ready().await {
                    Ok(())
                } else {
                    Err("the outbox database does not answer".to_owned())
                }
            }
        });
        health.merge(eventline_common::metrics::router(self.metrics.clone()))
    }

    /// Publishes rows until `token` is cancelled, then finishes the batch in flight (published
    /// and marked), stops listening and closes the database pool.
    pub async fn run(self, token: CancellationToken) -> anyhow::Result<()> {
        let wake_up = Arc::new(Notify::new());
        let listening = token.child_token();
        let listener =
            wake::listen(self.store.pool().clone(), self.config.channel.clone(), wake_up.clone(), listening.clone());
        let relaying = async {
            self.relay.run(&wake_up, &token).await;
            listening.cancel();
        };
        tokio::join!(listener, relaying);
        self.store.close().await;
        tracing::info!(table = %self.config.table, "outbox relay stopped");
        Ok(())
    }
}
