//! What the projector counts (beside the consumer runtime's own metrics).

use eventline_common::metrics::register;
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

pub const EVENTS_TOTAL: &str = "eventline_projector_events_total";
pub const READ_YOUR_WRITES_TOTAL: &str = "eventline_projector_read_your_writes_total";
pub const ACTIVE_GENERATION: &str = "eventline_projector_active_generation";

/// `outcome` label values.
pub mod outcome {
    pub const APPLIED: &str = "applied";
    pub const DUPLICATE: &str = "duplicate";
    pub const CAUGHT_UP: &str = "caught_up";
    pub const NOT_CAUGHT_UP: &str = "not_caught_up";
}

#[derive(Debug, Clone)]
pub struct ProjectorMetrics {
    events: IntCounterVec,
    read_your_writes: IntCounterVec,
    generation: IntGauge,
}

impl ProjectorMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let events = register(
            registry,
            IntCounterVec::new(
                Opts::new(EVENTS_TOTAL, "Events the read model applied or skipped as duplicates"),
                &["outcome"],
            )?,
        )?;
        let read_your_writes = register(
            registry,
            IntCounterVec::new(
                Opts::new(
                    READ_YOUR_WRITES_TOTAL,
                    "Queries that waited for a position, by whether it was reached in time",
                ),
                &["outcome"],
            )?,
        )?;
        let generation = register(
            registry,
            IntGauge::new(ACTIVE_GENERATION, "The generation of the read model this process applies events to")?,
        )?;
        Ok(Self { events, read_your_writes, generation })
    }

    pub fn following(&self, generation: i64) {
        self.generation.set(generation);
    }

    pub fn applied(&self, applied: usize, duplicates: usize) {
        self.events.with_label_values(&[outcome::APPLIED]).inc_by(applied as u64);
        self.events.with_label_values(&[outcome::DUPLICATE]).inc_by(duplicates as u64);
    }

    pub fn waited(&self, caught_up: bool) {
        let label = if caught_up { outcome::CAUGHT_UP } else { outcome::NOT_CAUGHT_UP };
        self.read_your_writes.with_label_values(&[label]).inc();
    }
}
