//! The ingest service's metrics and the events that move them, each emitting its log line and
//! its metric in one place.
//!
//! - `eventline_ingest_requests_total{route, status_class}`
//! - `eventline_ingest_events_total{outcome}`: `published`, `replayed`, `invalid`, `forbidden`,
//!   `conflict`, `unavailable`
//! - `eventline_ingest_validation_failures_total`: events refused by their schema or envelope
//! - `eventline_ingest_publish_duration_seconds`: from handing a request's events to the
//!   producer until the broker acknowledged the last (one observation per request)
//!
//! `route` is the matched route template (a fixed set) or `unmatched`.

use std::time::Duration;

use axum::http::StatusCode;
use eventline_common::metrics::{register, status_class, RequestObserver};
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts};

pub const REQUESTS_TOTAL: &str = "eventline_ingest_requests_total";
pub const EVENTS_TOTAL: &str = "eventline_ingest_events_total";
pub const VALIDATION_FAILURES_TOTAL: &str = "eventline_ingest_validation_failures_total";
pub const PUBLISH_DURATION_SECONDS: &str = "eventline_ingest_publish_duration_seconds";

/// What became of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Published,
    Replayed,
    Invalid,
    Forbidden,
    Conflict,
    Unavailable,
}

impl Outcome {
    pub const ALL: [Outcome; 6] = [
        Outcome::Published,
        Outcome::Replayed,
        Outcome::Invalid,
        Outcome::Forbidden,
        Outcome::Conflict,
        Outcome::Unavailable,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Published => "published",
            Outcome::Replayed => "replayed",
            Outcome::Invalid => "invalid",
            Outcome::Forbidden => "forbidden",
            Outcome::Conflict => "conflict",
            Outcome::Unavailable => "unavailable",
        }
    }
}

#[derive(Clone, Debug)]
pub struct IngestMetrics {
    requests: IntCounterVec,
    events: IntCounterVec,
    validation_failures: IntCounter,
    publish_duration: Histogram,
}

impl IngestMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &prometheus::Registry) -> Result<Self, prometheus::Error> {
        let requests = register(
            registry,
            IntCounterVec::new(Opts::new(REQUESTS_TOTAL, "Ingest HTTP requests answered"), &["route", "status_class"])?,
        )?;
        let events = register(
            registry,
            IntCounterVec::new(Opts::new(EVENTS_TOTAL, "Events received, by what became of them"), &["outcome"])?,
        )?;
        for outcome in Outcome::ALL {
            events.with_label_values(&[outcome.label()]);
        }
        let validation_failures = register(
            registry,
            IntCounter::new(VALIDATION_FAILURES_TOTAL, "Events refused because they do not fit their schema")?,
        )?;
        let publish_duration = register(
            registry,
            Histogram::with_opts(
                HistogramOpts::new(PUBLISH_DURATION_SECONDS, "Time until the broker acknowledged a request's events")
                    .buckets(vec![
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    ]),
            )?,
        )?;
        Ok(Self { requests, events, validation_failures, publish_duration })
    }

    pub fn event_finished(&self, outcome: Outcome) {
        self.events.with_label_values(&[outcome.label()]).inc();
    }

    pub fn event_invalid(&self, problems: usize) {
        tracing::debug!(problems, "event refused by validation");
        self.validation_failures.inc();
        self.event_finished(Outcome::Invalid);
    }

    pub fn events_published(&self, count: usize, elapsed: Duration) {
        tracing::debug!(count, elapsed_ms = elapsed.as_secs_f64() * 1000.0, "events acknowledged");
        self.publish_duration.observe(elapsed.as_secs_f64());
    }

    pub fn broker_unavailable(&self, failed: usize, error: &dyn std::error::Error) {
        tracing::warn!(failed, error = %error, "the broker did not acknowledge events");
    }
}

impl RequestObserver for IngestMetrics {
    fn request_finished(&self, route: &str, status: StatusCode, elapsed: Duration) {
        let class = status_class(status);
        tracing::debug!(
            route,
            status = status.as_u16(),
            elapsed_ms = elapsed.as_secs_f64() * 1000.0,
            "request answered"
        );
        self.requests.with_label_values(&[route, class]).inc();
    }
}
