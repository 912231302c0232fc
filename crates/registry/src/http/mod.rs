//! The Confluent Schema Registry REST API (the subset clients use), over [`Registry`].
//!
//! Reads and compatibility tests are open; writes (register, delete, config changes) need the
//! write token when one is configured.

mod compatibility;
mod config;
pub mod error;
pub mod extract;
mod schemas;
mod subjects;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::{middleware, Router};
use eventline_common::config::Secret;
use tower_http::trace::TraceLayer;

use crate::metrics::RegistryMetrics;
use crate::service::Registry;
use eventline_common::metrics::track_requests;

pub use error::ApiError;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    pub write_token: Arc<Secret>,
    pub max_body_bytes: usize,
}

/// The REST API routes, counted and timed in `metrics`.
pub fn router(state: AppState, metrics: RegistryMetrics) -> Router {
    let max_body_bytes = state.max_body_bytes;
    Router::new()
        .route("/", get(schemas::root))
        .route("/schemas/types", get(schemas::types))
        .route("/schemas/ids/{id}", get(schemas::by_id))
        .route("/schemas/ids/{id}/schema", get(schemas::raw_by_id))
        .route("/schemas/ids/{id}/subjects", get(schemas::subjects_of))
        .route("/schemas/ids/{id}/versions", get(schemas::versions_of))
        .route("/schemas/guids/{guid}", get(schemas::by_guid))
        .route("/subjects", get(subjects::list))
        .route("/subjects/{subject}", post(subjects::lookup).delete(subjects::delete))
        .route("/subjects/{subject}/versions", get(subjects::versions).post(subjects::register))
        .route("/subjects/{subject}/versions/{version}", get(subjects::version).delete(subjects::delete_version))
        .route("/subjects/{subject}/versions/{version}/schema", get(subjects::raw_version))
        .route("/subjects/{subject}/versions/{version}/referencedby", get(subjects::referenced_by))
        .route("/compatibility/subjects/{subject}/versions", post(compatibility::against_registration))
        .route("/compatibility/subjects/{subject}/versions/{version}", post(compatibility::against_version))
        .route("/config", get(config::get_global).put(config::put_global).delete(config::delete_global))
        .route("/config/{subject}", get(config::get_subject).put(config::put_subject).delete(config::delete_subject))
        .route("/mode", get(schemas::mode))
        .route("/mode/{subject}", get(schemas::mode))
        .route("/contexts", get(schemas::contexts))
        .fallback(error::route_not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn_with_state(metrics, track_requests::<RegistryMetrics>))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
