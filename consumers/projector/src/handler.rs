//! The consumer [`Handler`]: decodes a batch into [`Recorded`] events and applies it with its
//! offsets in one transaction.

use eventline_common::events::{
    CustomerEmailChanged, CustomerRegistered, DomainEvent, OrderCancelled, OrderPlaced,
    OrderShipped, PaymentAuthorized, PaymentCaptured, PaymentFailed, PaymentRefunded,
};
use eventline_common::kafka::consumer::{Batch, Delivered, EventError, Handler, HandlerError};

use crate::domain::{Fact, Recorded};
use crate::metrics::ProjectorMetrics;
use crate::store::Store;

/// The projector's handler.
#[derive(Debug, Clone)]
pub struct Projector {
    store: Store,
    metrics: ProjectorMetrics,
}

impl Projector {
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
                events.push(Recorded::new(
                    delivered.envelope.id,
                    delivered.envelope.time,
                    fact,
                ));
            }
        }
        let outcome = self
            .store
            .apply_batch(batch.group(), batch.positions(), &events)
            .await
            .map_err(HandlerError::retryable)?;
        self.metrics.applied(outcome.applied, outcome.duplicates);
        Ok(())
    }
}
