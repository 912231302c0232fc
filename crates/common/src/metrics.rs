//! Prometheus metrics: one registry per process, served at `/metrics`.
//!
//! Names follow `eventline_<subsystem>_<name>_<unit>`, base units, `_total` on counters, and
//! labels from small fixed sets (never ids or error text).

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus::{Encoder, Registry, TextEncoder};

pub const METRICS_PATH: &str = "/metrics";

/// A router with `GET /metrics` over `registry`.
pub fn router(registry: Registry) -> Router {
    Router::new().route(
        METRICS_PATH,
        get(move || {
            let registry = registry.clone();
            async move { render(&registry) }
        }),
    )
}

/// The text exposition of everything in `registry`.
pub fn render(registry: &Registry) -> impl IntoResponse {
    let encoder = TextEncoder::new();
    let mut body = Vec::new();
    if let Err(error) = encoder.encode(&registry.gather(), &mut body) {
        tracing::error!(%error, "cannot encode metrics");
    }
    ([(CONTENT_TYPE, encoder.format_type().to_owned())], body)
}

/// Registers `collector` and returns it; a metric registered twice (two services in one process
/// sharing the registry) is a programming error reported at start-up.
pub fn register<C>(registry: &Registry, collector: C) -> Result<C, prometheus::Error>
where
    C: prometheus::core::Collector + Clone + 'static,
{
    registry.register(Box::new(collector.clone()))?;
    Ok(collector)
}
