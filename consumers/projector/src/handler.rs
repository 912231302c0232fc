//! The consumer [`Handler`]: decodes a batch into [`Recorded`] events and applies it with its
//! offsets in one transaction, to the tables of one generation.

use eventline_common::events::{
    CustomerEmailChanged, CustomerRegistered, DomainEvent, OrderCancelled, OrderPlaced, OrderShipped,
    PaymentAuthorized, PaymentCaptured, PaymentFailed, PaymentRefunded,
};
use eventline_common::kafka::consumer::{Batch, Delivered, EventError, Handler, HandlerError};

use crate::domain::{Fact, Recorded};
use crate::metrics::ProjectorMetrics;
use crate::store::{Store, StoreError};

/// What a batch for a generation that is no longer written waits for (the name its pause is
/// logged under): its consumer being stopped for the next generation's.
pub const GENERATION_SWAP: &str = "generation swap";

/// The projector's handler.
#[derive(Debug, Clone)]
pub struct Projector {
    store: Store,
    metrics: ProjectorMetrics,
}

impl Projector {
    /// Applies batches to `store`'s generation.
    pub fn new(store: Store, metrics: ProjectorMetrics) -> Self {
        Self { store, metrics }
    }
}

/// The fact a delivered event carries; `None` for a type the projector does not read.
pub fn fact(event: &Delivered) -> Result<Option<Fact>, EventError> {
    let fact = match event.event_type.as_str() {
        OrderPlaced::NAME => Fact::OrderPlaced(event.event()?),
        OrderCancelled::NAME => Fact::OrderCancelled(event.event()?),
        OrderShipped::NAME => Fact::OrderShipped(event.event()?),
        PaymentAuthorized::NAME => Fact::PaymentAuthorized(event.event()?),
        PaymentCaptured::NAME => Fact::PaymentCaptured(event.event()?),
        PaymentFailed::NAME => Fact::PaymentFailed(event.event()?),
        PaymentRefunded::NAME => Fact::PaymentRefunded(event.event()?),
        CustomerRegistered::NAME => Fact::CustomerRegistered(event.event()?),
        CustomerEmailChanged::NAME => Fact::CustomerEmailChanged(event.event()?),
        _ => return Ok(None),
    };
    Ok(Some(fact))
}

impl Handler for Projector {
    async fn handle(&self, batch: &Batch) -> Result<(), HandlerError> {
        let mut events = Vec::with_capacity(batch.len());
        for delivered in batch {
            // An event that does not fit its type is dead-lettered alone.
            if let Some(fact) = fact(delivered)? {
                events.push(Recorded::new(delivered.envelope.id, delivered.envelope.time, fact));
            }
        }
        match self.store.apply_batch(batch.group(), batch.positions(), &events).await {
            Ok(outcome) => {
                self.metrics.applied(outcome.applied, outcome.duplicates);
                Ok(())
            }
            // Swapped out: nothing was written, and the consumer of this generation is about to
            // be stopped (within the projector's watch interval). The runtime pauses this
            // partition until then, spending no retries, and leaves the batch and its offsets
            // as they are, for a rollback to resume.
            Err(error @ StoreError::NotWritable { .. }) => Err(HandlerError::unavailable(GENERATION_SWAP, error)),
            Err(error) => Err(HandlerError::retryable(error)),
        }
    }
}
