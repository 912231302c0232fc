//! The registry's metrics and the events that move them, each emitting its log line and its
//! metric in one place.
//!
//! - `eventline_registry_requests_total{route, status_class}`
//! - `eventline_registry_request_duration_seconds{route}`
//! - `eventline_registry_registrations_total{outcome}` (`created`, `existing`, `incompatible`)
//!
//! `route` is the matched route template (a fixed set) or `unmatched`.

use std::time::Duration;

use axum::http::StatusCode;
use eventline_common::metrics::{register, status_class, RequestObserver};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts};

pub const REQUESTS_TOTAL: &str = "eventline_registry_requests_total";
pub const REQUEST_DURATION_SECONDS: &str = "eventline_registry_request_duration_seconds";
pub const REGISTRATIONS_TOTAL: &str = "eventline_registry_registrations_total";

#[derive(Clone, Debug)]
pub struct RegistryMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
    registrations: IntCounterVec,
}

impl RegistryMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &prometheus::Registry) -> Result<Self, prometheus::Error> {
        let requests = register(
            registry,
            IntCounterVec::new(
                Opts::new(REQUESTS_TOTAL, "Schema registry HTTP requests answered"),
                &["route", "status_class"],
            )?,
        )?;
        let duration = register(
            registry,
            HistogramVec::new(
                HistogramOpts::new(REQUEST_DURATION_SECONDS, "Schema registry HTTP request latency")
                    .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
                &["route"],
            )?,
        )?;
        let registrations = register(
            registry,
            IntCounterVec::new(Opts::new(REGISTRATIONS_TOTAL, "Schema registrations by outcome"), &["outcome"])?,
        )?;
        Ok(Self { requests, duration, registrations })
    }

    pub fn schema_registered(&self, subject: &str, id: i64, version: i64) {
        tracing::info!(subject, id, version, "schema registered");
        self.registrations.with_label_values(&["created"]).inc();
    }

    pub fn schema_already_registered(&self, subject: &str, id: i64, version: i64) {
        tracing::debug!(subject, id, version, "schema already registered");
        self.registrations.with_label_values(&["existing"]).inc();
    }

    pub fn schema_incompatible(&self, subject: &str, problems: usize) {
        tracing::info!(subject, problems, "schema rejected as incompatible");
        self.registrations.with_label_values(&["incompatible"]).inc();
    }
}

impl RequestObserver for RegistryMetrics {
    fn request_finished(&self, route: &str, status: StatusCode, elapsed: Duration) {
        let class = status_class(status);
        self.requests.with_label_values(&[route, class]).inc();
        self.duration.with_label_values(&[route]).observe(elapsed.as_secs_f64());
    }
}
