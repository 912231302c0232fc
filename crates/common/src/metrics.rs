//! Prometheus metrics: one registry per process, served at `/metrics`.
//!
//! Names follow `eventline_<subsystem>_<name>_<unit>`, base units, `_total` on counters, and
//! labels from small fixed sets (never ids or error text).

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::IntoResponse;
use axum::response::Response;
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

/// The route label of requests that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// A service's HTTP metrics: told about every answered request by [`track_requests`].
pub trait RequestObserver: Clone + Send + Sync + 'static {
    /// `route` is the route template (`/v1/orders/{id}`), never the raw path.
    fn request_finished(&self, route: &str, status: StatusCode, elapsed: Duration);
}

/// Middleware (`axum::middleware::from_fn_with_state(metrics, track_requests::<M>)`): times every
/// request and reports it under its route template.
pub async fn track_requests<M: RequestObserver>(State(metrics): State<M>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| UNMATCHED_ROUTE.to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.request_finished(&route, response.status(), started.elapsed());
    response
}

/// The status class label: `1xx` … `5xx`.
pub fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}
