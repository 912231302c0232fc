//! What a consumer team writes: a [`Handler`] for [`Batch`]es of decoded events, answering
//! `Ok(())` or a [`HandlerError`] that tells the runtime what to do next.

use std::future::Future;
use std::sync::Arc;

use apache_avro::types::Value;
use chrono::{DateTime, Utc};

use super::offsets::{PartitionOffset, SavePositions};
use super::parked::ParkedId;
use crate::envelope::{Envelope, TraceParent};
use crate::events::DomainEvent;
use crate::kafka::Position;

/// Handles the events of one consumer. The runtime calls it with batches of one partition, in
/// offset order, one call at a time per partition and concurrently across partitions.
///
/// Return `Ok(())` once every effect of the batch is durable. A handler never loops or sleeps to
/// retry: it returns [`HandlerError::Retryable`] and the runtime backs off, or, when a
/// dependency is down rather than the events at fault, [`HandlerError::Unavailable`] and the
/// runtime pauses the partition (or the consumer) until the dependency is back. In the
/// transactional offset mode, the handler saves [`Batch::positions`] with
/// [`OffsetStore::save`](super::OffsetStore::save) in the same transaction as its effects.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, batch: &Batch) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

/// Events of one partition, in offset order, for one handler call.
///
/// With `key_order = "key"` a batch may hold parked events released after the event that
/// blocked their key succeeded ([`is_released`](Self::is_released)): they all have one key and
/// lie before the partition's saved offset, so [`positions`](Self::positions) moves no offset and
/// lists them as [`Positions::released`] instead; saving it deletes them from the parked store.
#[derive(Debug)]
pub struct Batch {
    group: Arc<str>,
    events: Vec<Delivered>,
    position: PartitionOffset,
    positions: Positions,
}

impl Batch {
    pub(crate) fn new(
        group: Arc<str>,
        events: Vec<Delivered>,
        position: PartitionOffset,
        positions: Positions,
    ) -> Self {
        Self { group, events, position, positions }
    }

    pub(crate) fn into_events(self) -> Vec<Delivered> {
        self.events
    }

    pub fn events(&self) -> &[Delivered] {
        &self.events
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Delivered> {
        self.events.iter()
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The consumer group (what [`OffsetStore::save`](super::OffsetStore::save) takes).
    pub fn group(&self) -> &str {
        &self.group
    }

    pub fn topic(&self) -> &str {
        &self.position.topic
    }

    pub fn partition(&self) -> i32 {
        self.position.partition
    }

    /// Where the partition continues once this batch is applied. It may lie past the last event:
    /// events in between were skipped, dead-lettered or parked before the call. For a released
    /// batch, the partition's saved offset (which lies past its events already).
    pub fn next_offset(&self) -> i64 {
        self.position.next_offset
    }

    /// `true` when the events were parked and are released now (`key_order = "key"`).
    pub fn is_released(&self) -> bool {
        self.positions.offsets.is_empty()
    }

    /// What to save with the batch's effects in the transactional offset mode: pass it whole to
    /// [`OffsetStore::save`](super::OffsetStore::save) (it also derefs to the offsets alone,
    /// `&[PartitionOffset]`, which moves offsets but deletes no parked event).
    pub fn positions(&self) -> &Positions {
        &self.positions
    }
}

/// What a handler call saves in its transaction ([`Batch::positions`]): where partitions
/// continue, and the parked events it applies, to delete (`key_order = "key"`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Positions {
    offsets: Vec<PartitionOffset>,
    released: Vec<ParkedId>,
}

impl Positions {
    pub(crate) fn new(offsets: Vec<PartitionOffset>, released: Vec<ParkedId>) -> Self {
        Self { offsets, released }
    }

    pub fn offsets(&self) -> &[PartitionOffset] {
        &self.offsets
    }

    /// Parked events this batch applies: released ones, or the dead-lettered event a redriven
    /// one stands for.
    pub fn released(&self) -> &[ParkedId] {
        &self.released
    }
}

impl std::ops::Deref for Positions {
    type Target = [PartitionOffset];
    fn deref(&self) -> &[PartitionOffset] {
        &self.offsets
    }
}

impl SavePositions for Positions {
    fn offsets(&self) -> &[PartitionOffset] {
        &self.offsets
    }

    fn released(&self) -> &[ParkedId] {
        &self.released
    }
}

impl<'a> IntoIterator for &'a Batch {
    type Item = &'a Delivered;
    type IntoIter = std::slice::Iter<'a, Delivered>;
    fn into_iter(self) -> Self::IntoIter {
        self.events.iter()
    }
}

/// One decoded event and where it came from.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    /// The Kafka key (the aggregate id).
    pub key: Option<String>,
    /// The record timestamp.
    pub timestamp: Option<DateTime<Utc>>,
    /// The CloudEvents headers: event id (the idempotency key), source, time, trace context.
    pub envelope: Envelope,
    /// The short event type name, e.g. `OrderPlaced`.
    pub event_type: String,
    /// The value decoded with its writer schema and resolved into the consumer's reader schema.
    pub value: Value,
    pub(crate) trace: TraceParent,
    pub(crate) span: tracing::Span,
}

impl Delivered {
    /// The value as a typed event; a different event type or a value that does not fit `E` is
    /// an [`EventError`], which `?` turns into a permanent failure of this event.
    pub fn event<E: DomainEvent>(&self) -> Result<E, EventError> {
        if self.event_type != E::NAME {
            return Err(EventError::WrongType {
                offset: self.offset,
                expected: E::NAME,
                actual: self.event_type.clone(),
            });
        }
        apache_avro::from_value(&self.value).map_err(|source| EventError::Deserialize {
            offset: self.offset,
            event_type: E::NAME,
            source: Box::new(source),
        })
    }

    /// `true` when this is an event of type `E`.
    pub fn is<E: DomainEvent>(&self) -> bool {
        self.event_type == E::NAME
    }

    /// The trace context of work done for this event (a child of the producer's span, or a new
    /// trace): put it on events published in reaction, so the trace continues.
    pub fn trace(&self) -> TraceParent {
        self.trace
    }

    /// The span of this event (topic, partition, offset, event type, trace id): enter it, or
    /// instrument per-event work with it.
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    pub fn position(&self) -> Position {
        Position { topic: self.topic.to_string(), partition: self.partition, offset: self.offset }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("the event at offset {offset} is a {actual}, not a {expected}")]
    WrongType { offset: i64, expected: &'static str, actual: String },
    #[error("the {event_type} at offset {offset} does not fit the Rust type: {source}")]
    Deserialize {
        offset: i64,
        event_type: &'static str,
        #[source]
        source: Box<apache_avro::Error>,
    },
}

impl EventError {
    pub fn offset(&self) -> i64 {
        match self {
            Self::WrongType { offset, .. } | Self::Deserialize { offset, .. } => *offset,
        }
    }
}

/// Why a handler call failed, and what the runtime should do about it. `offset` names the one
/// event at fault when the handler knows it; `None` means the whole batch.
///
/// - `Retryable`: back off (exponential, with jitter) and call again with the same events; once
///   the retry policy is exhausted the event at `offset` is dead-lettered, or, for a whole
///   batch, its events are tried one by one so only the failing ones are dead-lettered.
/// - `Permanent`: the event at `offset` goes to the dead-letter topic and the rest of the batch
///   is handled again without it; for a whole batch, its events are tried one by one.
/// - `Duplicate`: the event at `offset` (or the whole batch) was applied before; it is dropped
///   and counted, and the rest is handled again.
/// - `Unavailable`: nothing is wrong with the events; a `dependency` the handler needs (a
///   database, a downstream service, an open [circuit breaker](crate::breaker)) cannot be
///   reached. The runtime pauses and calls again with the same events, with backoff
///   ([`OutagePolicy`](super::OutagePolicy)), for as long as it takes: no retry budget is spent
///   and nothing is dead-lettered. `scope` says what pauses: this partition, or every partition
///   of the consumer (see [`PauseScope`]).
///
/// Whatever the handler did during a failed call must not be durable (roll the transaction
/// back), except idempotent effects.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("retryable failure: {source:#}")]
    Retryable { offset: Option<i64>, source: anyhow::Error },
    #[error("permanent failure: {source:#}")]
    Permanent { offset: Option<i64>, source: anyhow::Error },
    #[error("already applied")]
    Duplicate { offset: Option<i64> },
    #[error("{dependency} is unavailable: {source:#}")]
    Unavailable { dependency: String, scope: PauseScope, source: anyhow::Error },
}

/// What waits while a dependency is unavailable ([`HandlerError::Unavailable`]).
///
/// The runtime keeps polling Kafka either way, so the consumer stays in its group: a paused
/// partition only stops taking records from its queue, and librdkafka stops fetching for it once
/// the queue holds its prefetch limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PauseScope {
    /// Only the partition whose handler call said so; the others go on. For a dependency that
    /// some events need and others do not, or when other partitions may well succeed.
    Partition,
    /// Every partition of this consumer waits before its next handler call, while the partition
    /// that said so probes the dependency (the same call again, after backoff); its first answer
    /// other than "unavailable for the consumer" lets all of them go on. For a dependency every
    /// event needs (the consumer's database): one caller finds out it is back, not all of them.
    Consumer,
}

impl PauseScope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Partition => "partition",
            Self::Consumer => "consumer",
        }
    }
}

impl HandlerError {
    pub fn retryable(source: impl Into<anyhow::Error>) -> Self {
        Self::Retryable { offset: None, source: source.into() }
    }

    pub fn retryable_at(offset: i64, source: impl Into<anyhow::Error>) -> Self {
        Self::Retryable { offset: Some(offset), source: source.into() }
    }

    pub fn permanent(source: impl Into<anyhow::Error>) -> Self {
        Self::Permanent { offset: None, source: source.into() }
    }

    pub fn permanent_at(offset: i64, source: impl Into<anyhow::Error>) -> Self {
        Self::Permanent { offset: Some(offset), source: source.into() }
    }

    pub fn duplicate_at(offset: i64) -> Self {
        Self::Duplicate { offset: Some(offset) }
    }

    /// `dependency` (a short fixed name such as `"postgres"` or `"pricing-api"`, used in logs)
    /// cannot be reached: pause this partition and call again, see [`PauseScope::Partition`].
    pub fn unavailable(dependency: impl Into<String>, source: impl Into<anyhow::Error>) -> Self {
        Self::Unavailable { dependency: dependency.into(), scope: PauseScope::Partition, source: source.into() }
    }

    /// `dependency` cannot be reached: pause every partition of the consumer while this one
    /// probes it, see [`PauseScope::Consumer`].
    pub fn unavailable_consumer(dependency: impl Into<String>, source: impl Into<anyhow::Error>) -> Self {
        Self::Unavailable { dependency: dependency.into(), scope: PauseScope::Consumer, source: source.into() }
    }

    /// The offset of the event at fault, if the handler named one (never for `Unavailable`).
    pub fn offset(&self) -> Option<i64> {
        match self {
            Self::Retryable { offset, .. } | Self::Permanent { offset, .. } | Self::Duplicate { offset } => *offset,
            Self::Unavailable { .. } => None,
        }
    }
}

impl From<EventError> for HandlerError {
    fn from(error: EventError) -> Self {
        Self::permanent_at(error.offset(), error)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::events::{samples, OrderCancelled, OrderPlaced};

    /// A delivered `OrderPlaced` at `offset`, decoded like the runtime does.
    pub(crate) fn delivered(offset: i64, order_id: &str) -> Delivered {
        let catalog = Catalog::embedded().unwrap();
        let schema = catalog.event("OrderPlaced").unwrap().schema.clone();
        let order = samples::order_placed(order_id);
        let bytes = crate::avro::encode(crate::avro::SchemaId(1), &schema, &order).unwrap();
        let framed = crate::avro::unframe(&bytes).unwrap();
        let value = crate::avro::decode_value(framed.body, &schema, None).unwrap();
        Delivered {
            topic: Arc::from("orders"),
            partition: 0,
            offset,
            key: Some(order_id.to_owned()),
            timestamp: None,
            envelope: Envelope {
                id: uuid::Uuid::new_v4(),
                source: "/tests".into(),
                event_type: "com.eventline.commerce.OrderPlaced".into(),
                time: Utc::now(),
                subject: None,
                traceparent: None,
                correlation_id: None,
            },
            event_type: "OrderPlaced".into(),
            value,
            trace: TraceParent::new_root(),
            span: tracing::Span::none(),
        }
    }

    #[test]
    fn typed_access_reads_the_event_and_refuses_another_type() {
        let event = delivered(7, "order-7");
        let order: OrderPlaced = event.event().unwrap();
        assert_eq!(order, samples::order_placed("order-7"));
        assert!(event.is::<OrderPlaced>());
        let err = event.event::<OrderCancelled>().unwrap_err();
        assert!(matches!(err, EventError::WrongType { offset: 7, .. }), "{err}");
        let handler_error = HandlerError::from(err);
        assert!(matches!(handler_error, HandlerError::Permanent { offset: Some(7), .. }));
    }

    #[test]
    fn handler_errors_name_their_offset_and_cause() {
        let err = HandlerError::retryable_at(3, anyhow::anyhow!("db down").context("inserting order"));
        assert_eq!(err.offset(), Some(3));
        assert_eq!(err.to_string(), "retryable failure: inserting order: db down");
        assert_eq!(HandlerError::permanent(std::io::Error::other("x")).offset(), None);
        let down = HandlerError::unavailable_consumer("postgres", anyhow::anyhow!("connection refused"));
        assert!(matches!(&down, HandlerError::Unavailable { scope: PauseScope::Consumer, .. }));
        assert_eq!(down.to_string(), "postgres is unavailable: connection refused");
        assert_eq!(down.offset(), None);
    }
}
