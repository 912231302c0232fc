//! The relay's metrics and the events that move them, each emitting its log line and its metric
//! in one place.
//!
//! - `eventline_outbox_published_total`: rows published and marked.
//! - `eventline_outbox_rejected_total{reason}`: rows given up on (`invalid`, `refused`).
//! - `eventline_outbox_publish_failures_total`: rows the broker did not acknowledge (retried).
//! - `eventline_outbox_lag_rows`: rows neither published nor rejected.
//! - `eventline_outbox_publish_duration_seconds`: from handing a batch to the producer until the
//!   broker acknowledged (or refused) all of it.

use std::time::Duration;

use eventline_common::metrics::register;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts};

pub const PUBLISHED_TOTAL: &str = "eventline_outbox_published_total";
pub const REJECTED_TOTAL: &str = "eventline_outbox_rejected_total";
pub const PUBLISH_FAILURES_TOTAL: &str = "eventline_outbox_publish_failures_total";
pub const LAG_ROWS: &str = "eventline_outbox_lag_rows";
pub const PUBLISH_DURATION_SECONDS: &str = "eventline_outbox_publish_duration_seconds";

/// Why a row was rejected: the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// The event can never be valid (unknown type, data not fitting the schema, key mismatch).
    Invalid,
    /// The broker kept refusing the record (`max_attempts`).
    Refused,
}

impl RejectReason {
    fn label(self) -> &'static str {
        match self {
            RejectReason::Invalid => "invalid",
            RejectReason::Refused => "refused",
        }
    }
}

#[derive(Clone, Debug)]
pub struct RelayMetrics {
    published: IntCounter,
    rejected: IntCounterVec,
    failures: IntCounter,
    lag: IntGauge,
    duration: Histogram,
}

impl RelayMetrics {
    pub fn register(registry: &prometheus::Registry) -> Result<Self, prometheus::Error> {
        Ok(Self {
            published: register(
                registry,
                IntCounter::new(PUBLISHED_TOTAL, "Outbox rows published to Kafka and marked")?,
            )?,
            rejected: register(
                registry,
                IntCounterVec::new(Opts::new(REJECTED_TOTAL, "Outbox rows rejected, by reason"), &["reason"])?,
            )?,
            failures: register(
                registry,
                IntCounter::new(PUBLISH_FAILURES_TOTAL, "Outbox rows the broker did not acknowledge (retried)")?,
            )?,
            lag: register(registry, IntGauge::new(LAG_ROWS, "Outbox rows neither published nor rejected")?)?,
            duration: register(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new(PUBLISH_DURATION_SECONDS, "Time for the broker to acknowledge one outbox batch")
                        .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
                )?,
            )?,
        })
    }

    pub fn batch_published(&self, rows: usize, held_back: usize, elapsed: Duration) {
        tracing::debug!(rows, held_back, elapsed_ms = elapsed.as_millis() as u64, "outbox batch published");
        self.published.inc_by(rows as u64);
        self.duration.observe(elapsed.as_secs_f64());
    }

    pub fn row_rejected(&self, id: i64, event_id: &str, reason: RejectReason, error: &str) {
        tracing::warn!(id, event_id, reason = reason.label(), error, "outbox row rejected");
        self.rejected.with_label_values(&[reason.label()]).inc();
    }

    pub fn rows_not_acknowledged(&self, rows: usize, first_error: &str) {
        tracing::warn!(rows, error = first_error, "the broker did not acknowledge outbox rows; retrying with backoff");
        self.failures.inc_by(rows as u64);
    }

    pub fn lag(&self, pending: i64) {
        self.lag.set(pending);
    }
}
