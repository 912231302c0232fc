//! The consumer [`Handler`]: decodes a batch into [`Recorded`] events and applies it with its
//! offsets in one transaction, to the tables of one generation.

use std::time::Duration;

use eventline_common::events::{
    CustomerEmailChanged, CustomerRegistered, DomainEvent, OrderCancelled, OrderPlaced, OrderShipped,
    PaymentAuthorized, PaymentCaptured, PaymentFailed, PaymentRefunded,
};
use eventline_common::kafka::consumer::{Batch, Delivered, EventError, Handler, HandlerError};
use tokio_util::sync::CancellationToken;

use crate::domain::{Fact, Recorded};
use crate::metrics::ProjectorMetrics;
use crate::store::{Store, StoreError};

/// How long a batch for a generation that was just swapped out waits for its consumer to be
/// stopped before it fails (and is retried).
const SWAPPED_OUT_WAIT: Duration = Duration::from_secs(10);

/// The projector's handler.
#[derive(Debug, Clone)]
pub struct Projector {
    store: Store,
    metrics: ProjectorMetrics,
    stopping: CancellationToken,
}

impl Projector {
    /// Applies batches to `store`'s generation. `stopping` is the token its consumer runtime
    /// runs under: cancelled when the projector moves to another generation.
    pub fn new(store: Store, metrics: ProjectorMetrics, stopping: CancellationToken) -> Self {
        Self { store, metrics, stopping }
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
            Err(error @ StoreError::NotWritable { .. }) => {
                // Swapped out: nothing was written, and the consumer of this generation is
                // about to be stopped. Wait for that, then fail: the runtime sees it stopping
                // and leaves the batch (and its offsets) as they are, for a rollback to resume.
                tracing::debug!(%error, "batch for a generation no longer written; waiting to be stopped");
                tokio::select! {
                    () = self.stopping.cancelled() => {}
                    () = tokio::time::sleep(SWAPPED_OUT_WAIT) => {}
                }
                Err(HandlerError::retryable(error))
            }
            Err(error) => Err(HandlerError::retryable(error)),
        }
    }
}
