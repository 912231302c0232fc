//! The HTTP API: publish routes, the OpenAPI document, problem+json errors.

pub mod body;
pub mod error;
mod events;
pub mod extract;
pub mod trace;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::header::CONTENT_TYPE;
use axum::http::Method;
use axum::routing::{get, post, MethodRouter};
use axum::{middleware, Router};

use crate::auth::Authenticator;
use crate::ingest::Ingest;
use crate::metrics::IngestMetrics;
use crate::rate_limit::RateLimiter;
use eventline_common::metrics::track_requests;

pub use error::{Answer, ApiError, Problem};

pub const EVENTS_PATH: &str = "/v1/events";
pub const BATCH_PATH: &str = "/v1/events:batch";
pub const OPENAPI_PATH: &str = "/openapi.json";

/// The OpenAPI 3.1 document of this API.
pub const OPENAPI_DOCUMENT: &str = include_str!("../../openapi.json");

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub ingest: Arc<Ingest>,
    pub auth: Option<Arc<Authenticator>>,
    pub limiter: Option<Arc<RateLimiter>>,
    pub max_batch: usize,
    pub max_body_bytes: usize,
    pub source: Arc<str>,
    pub broker_wait: Duration,
    /// What 503 answers ask clients to wait.
    pub retry_after: Duration,
}

/// A route of the API: method and path template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
}

/// The API's own routes, from which [`router`] is built (the OpenAPI test reads this too).
fn table() -> Vec<(Route, MethodRouter<AppState>)> {
    vec![
        (Route { method: "POST", path: EVENTS_PATH }, post(events::publish_one)),
        (Route { method: "POST", path: BATCH_PATH }, post(events::publish_batch)),
        (Route { method: "GET", path: OPENAPI_PATH }, get(openapi)),
    ]
}

/// Every route the service answers: the API's and the health and metrics routes merged in
/// by [`crate::app::IngestApp::router`].
pub fn routes() -> Vec<Route> {
    let mut routes: Vec<Route> = table().into_iter().map(|(route, _)| route).collect();
    for path in
        [eventline_common::http::LIVE_PATH, eventline_common::http::READY_PATH, eventline_common::metrics::METRICS_PATH]
    {
        routes.push(Route { method: Method::GET.as_str(), path });
    }
    routes
}

/// The API routes, counted in `metrics`, each request in a span of its trace.
pub fn router(state: AppState, metrics: IngestMetrics) -> Router {
    let max_body_bytes = state.max_body_bytes;
    let mut router = Router::new();
    for (route, handler) in table() {
        router = router.route(route.path, handler);
    }
    router
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn_with_state(metrics, track_requests::<IngestMetrics>))
        .layer(middleware::from_fn(trace::trace_context))
        .with_state(state)
}

async fn openapi() -> impl axum::response::IntoResponse {
    ([(CONTENT_TYPE, "application/json")], OPENAPI_DOCUMENT)
}
