//! The consumer runtime's Prometheus metrics, labelled by group (and topic/partition for lag).
//!
//! Several consumers may run in one process (`eventline up`), so the collectors are one
//! process-wide set. The only way to get them is [`ConsumerMetrics::registered_in`] the registry
//! a service exports, and a [`ConsumerRuntime`](super::ConsumerRuntime) cannot be made without
//! them: a consumer's metrics cannot silently go missing.

use std::sync::OnceLock;

use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use super::dead_letter::DeadLetterReason;

pub const EVENTS_TOTAL: &str = "eventline_consumer_events_total";
pub const HANDLER_DURATION_SECONDS: &str = "eventline_consumer_handler_duration_seconds";
pub const LAG_EVENTS: &str = "eventline_consumer_lag_events";
pub const DEAD_LETTERED_TOTAL: &str = "eventline_consumer_dead_lettered_total";
pub const RETRIES_TOTAL: &str = "eventline_consumer_retries_total";
/// Partitions waiting out an unavailable dependency right now (their own pause, or the
/// consumer's): above zero for longer than a blip means an outage, not bad events.
pub const PAUSED_PARTITIONS: &str = "eventline_consumer_paused_partitions";
/// Events parked behind a blocked key (`key_order = "key"`), on the partitions this consumer
/// owns.
pub const PARKED_EVENTS: &str = "eventline_consumer_parked_events";

/// The `outcome` label of [`EVENTS_TOTAL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Part of a handler call that succeeded.
    Handled,
    /// An event type this consumer does not handle.
    Skipped,
    /// The handler reported it as already applied.
    Duplicate,
    DeadLettered,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Handled => "handled",
            Self::Skipped => "skipped",
            Self::Duplicate => "duplicate",
            Self::DeadLettered => "dead_lettered",
        }
    }
}

#[derive(Clone)]
pub struct ConsumerMetrics {
    events: IntCounterVec,
    handler_duration: HistogramVec,
    lag: IntGaugeVec,
    dead_lettered: IntCounterVec,
    retries: IntCounterVec,
    paused: IntGaugeVec,
    parked: IntGaugeVec,
}

impl ConsumerMetrics {
    /// A new, unregistered set (unit tests).
    pub(crate) fn new() -> Result<Self, prometheus::Error> {
        let buckets = vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
        Ok(Self {
            events: IntCounterVec::new(Opts::new(EVENTS_TOTAL, "Consumed events by outcome"), &["group", "outcome"])?,
            handler_duration: HistogramVec::new(
                HistogramOpts::new(HANDLER_DURATION_SECONDS, "Duration of handler calls (one batch each)")
                    .buckets(buckets),
                &["group"],
            )?,
            lag: IntGaugeVec::new(
                Opts::new(LAG_EVENTS, "Events between the group's next offset and the end of the partition"),
                &["group", "topic", "partition"],
            )?,
            dead_lettered: IntCounterVec::new(
                Opts::new(DEAD_LETTERED_TOTAL, "Events written to the dead-letter topic, by reason"),
                &["group", "reason"],
            )?,
            retries: IntCounterVec::new(
                Opts::new(RETRIES_TOTAL, "Handler calls repeated after a retryable failure"),
                &["group"],
            )?,
            paused: IntGaugeVec::new(
                Opts::new(PAUSED_PARTITIONS, "Partitions waiting for an unavailable dependency"),
                &["group"],
            )?,
            parked: IntGaugeVec::new(
                Opts::new(
                    PARKED_EVENTS,
                    "Events parked behind a blocked key (key_order = key), including the blocking ones",
                ),
                &["group"],
            )?,
        })
    }

    /// The process-wide set, registered in `registry` (the one served on `/metrics`);
    /// registering it in one registry twice, or in several, is fine.
    pub fn registered_in(registry: &Registry) -> Result<Self, prometheus::Error> {
        let metrics = Self::shared()?;
        metrics.register(registry)?;
        Ok(metrics)
    }

    fn shared() -> Result<Self, prometheus::Error> {
        static SHARED: OnceLock<ConsumerMetrics> = OnceLock::new();
        if let Some(metrics) = SHARED.get() {
            return Ok(metrics.clone());
        }
        let metrics = Self::new()?;
        Ok(SHARED.get_or_init(|| metrics).clone())
    }

    /// Adds these collectors to `registry`; already registered there is fine.
    fn register(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        let collectors: [Box<dyn prometheus::core::Collector>; 7] = [
            Box::new(self.events.clone()),
            Box::new(self.handler_duration.clone()),
            Box::new(self.lag.clone()),
            Box::new(self.dead_lettered.clone()),
            Box::new(self.retries.clone()),
            Box::new(self.paused.clone()),
            Box::new(self.parked.clone()),
        ];
        for collector in collectors {
            match registry.register(collector) {
                Ok(()) | Err(prometheus::Error::AlreadyReg) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// The handles of one group, labels bound once.
    pub(crate) fn for_group(&self, group: &str) -> GroupMetrics {
        GroupMetrics {
            group: group.to_owned(),
            handled: self.events.with_label_values(&[group, Outcome::Handled.as_str()]),
            skipped: self.events.with_label_values(&[group, Outcome::Skipped.as_str()]),
            duplicate: self.events.with_label_values(&[group, Outcome::Duplicate.as_str()]),
            dead_lettered_events: self.events.with_label_values(&[group, Outcome::DeadLettered.as_str()]),
            handler_duration: self.handler_duration.with_label_values(&[group]),
            retries: self.retries.with_label_values(&[group]),
            paused: self.paused.with_label_values(&[group]),
            parked: self.parked.with_label_values(&[group]),
            metrics: self.clone(),
        }
    }
}

/// One group's metrics.
#[derive(Clone)]
pub(crate) struct GroupMetrics {
    group: String,
    pub(crate) handled: IntCounter,
    pub(crate) skipped: IntCounter,
    pub(crate) duplicate: IntCounter,
    dead_lettered_events: IntCounter,
    pub(crate) handler_duration: prometheus::Histogram,
    pub(crate) retries: IntCounter,
    pub(crate) paused: IntGauge,
    pub(crate) parked: IntGauge,
    metrics: ConsumerMetrics,
}

impl GroupMetrics {
    pub(crate) fn dead_lettered(&self, reason: DeadLetterReason) {
        self.dead_lettered_events.inc();
        self.metrics.dead_lettered.with_label_values(&[&self.group, reason.as_str()]).inc();
    }

    pub(crate) fn set_lag(&self, topic: &str, partition: i32, lag: i64) {
        self.metrics.lag.with_label_values(&[&self.group, topic, &partition.to_string()]).set(lag);
    }

    /// A partition this consumer no longer owns has no lag of its own here.
    pub(crate) fn forget_lag(&self, topic: &str, partition: i32) {
        let _absent = self.metrics.lag.remove_label_values(&[&self.group, topic, &partition.to_string()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registering_twice_in_one_registry_is_fine_and_names_follow_the_convention() {
        let metrics = ConsumerMetrics::new().unwrap();
        let registry = Registry::new();
        metrics.register(&registry).unwrap();
        metrics.register(&registry).unwrap();
        let group = metrics.for_group("g");
        group.handled.inc();
        group.dead_lettered(DeadLetterReason::UnknownSchema);
        group.set_lag("orders", 1, 7);
        group.paused.inc();
        group.parked.inc();
        let names: Vec<String> = registry.gather().iter().map(|f| f.name().to_owned()).collect();
        for name in [EVENTS_TOTAL, LAG_EVENTS, DEAD_LETTERED_TOTAL, PAUSED_PARTITIONS, PARKED_EVENTS] {
            assert!(names.contains(&name.to_owned()), "{name} in {names:?}");
        }
        group.forget_lag("orders", 1);
        assert!(!registry.gather().iter().any(|f| f.name() == LAG_EVENTS && !f.get_metric().is_empty()));
    }
}
