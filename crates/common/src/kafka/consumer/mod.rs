//! The consumer runtime: a team adds a consumer by writing a [`Handler`], not a loop.
//!
//! The runtime owns the consumer group, decoding through the registry into the consumer's reader
//! schema, per-partition ordering with concurrency across partitions, batching, retries with
//! backoff, the dead-letter topic, offsets, rebalances, metrics, spans and graceful shutdown.
//!
//! ```no_run
//! use eventline_common::db::Database;
//! use eventline_common::events::OrderPlaced;
//! use eventline_common::kafka::consumer::{Batch, Handler, HandlerError, OffsetStore};
//!
//! /// A read model of order totals: rows and offsets commit in one transaction.
//! struct OrderTotals { db: Database }
//!
//! impl Handler for OrderTotals {
//!     async fn handle(&self, batch: &Batch) -> Result<(), HandlerError> {
//!         let mut tx = self.db.pool().begin().await.map_err(HandlerError::retryable)?;
//!         for event in batch {
//!             let order: OrderPlaced = event.event()?; // a bad event is dead-lettered alone
//!             sqlx::query("INSERT INTO order_totals (order_id, total_minor) VALUES ($1, $2) \
//!                          ON CONFLICT (order_id) DO NOTHING")
//!                 .bind(&order.order_id).bind(order.total_minor)
//!                 .execute(&mut *tx).await.map_err(HandlerError::retryable)?;
//!         }
//!         OffsetStore::save(&mut tx, batch.group(), batch.positions()).await.map_err(HandlerError::retryable)?;
//!         tx.commit().await.map_err(HandlerError::retryable)
//!     }
//! }
//! ```
//!
//! A consumer service ([`crate::service::ConsumerService`]) has the shared runtime start it;
//! by hand it is `ConsumerRuntime::new(settings, kafka, registry, catalog, OrderTotals { db },
//! ConsumerMetrics::registered_in(&served_registry)?).with_offset_store(OffsetStore::new(db))
//! .run(token)` (settings: `group_id`, `topics`, `event_types = ["OrderPlaced"]`,
//! `offset_mode = "transactional"`).
//!
//! # Delivery
//!
//! At-least-once from Kafka, exactly-once in effects, in one of two [`OffsetMode`]s:
//! - `transactional`: the handler saves [`Batch::positions`] with [`OffsetStore::save`] in the
//!   transaction of its effects; on assignment the runtime seeks to the stored offsets (the
//!   start position when there are none). A crash anywhere either committed a batch with its
//!   offsets or neither: nothing is lost or applied twice, by construction. Kafka commits
//!   follow as a trailing copy for tools. While it runs, the consumer keeps a heartbeat row in
//!   the same database ([`members`]), so offset resets can refuse to run under a live member.
//! - `kafka`: offsets are stored only after the handler succeeded, in order per partition,
//!   committed every `commit_interval` and synchronously on revoke and shutdown. A crash
//!   between a handler's success and the next commit hands those events to the handler again,
//!   so its effects must be idempotent (keyed by the event id, `envelope.id`).
//!
//! Events of types the consumer does not list are skipped; their offsets advance. Dead-lettering
//! is at-least-once too: a crash right after writing a dead letter may write it again. Not
//! covered: an instance cut off from the broker for longer than `session.timeout.ms` loses its
//! partitions while it may still be inside a handler call; the offset table has no fencing.
//!
//! # Failures and per-key order
//!
//! Undecodable bytes, an unreadable envelope or key, an unknown schema id, a permanent handler
//! failure, and retryable failures past the [`RetryPolicy`] go to the group's dead-letter topic
//! (headers in [`dead_letter::header`]); the partition then moves on. One failing event does
//! not take its batch with it: a [`HandlerError`] names the offset at fault when it can, and
//! otherwise the batch is retried and then tried one event at a time (see [`HandlerError`]).
//!
//! A dependency that is down is not a bad event: a handler that cannot reach its database or a
//! downstream service (or finds its [circuit breaker](crate::breaker) open) answers
//! [`HandlerError::Unavailable`] naming the dependency, and the runtime pauses instead of
//! retrying. The partition (or, with [`PauseScope::Consumer`], every partition of the consumer,
//! while the one that said so probes) waits with capped, jittered backoff ([`OutagePolicy`],
//! `outage.*` in the settings) and calls again with the same events, for as long as it takes:
//! no retry budget is spent, nothing is dead-lettered, order is kept. Meanwhile the consumer
//! thread keeps polling, so the instance stays in its group; a paused partition takes nothing
//! from its queue, and librdkafka stops fetching for it once the queue holds its prefetch. The
//! pause ends by itself at the first other answer, or when the consumer stops or the partition
//! is revoked (promptly: the backoff does not hold up a drain). It is logged when it starts,
//! changes and ends (not per call), counted in the `eventline_consumer_paused_partitions`
//! gauge, and reported by [`ConsumerProgress::outage`]; after `outage.ready_after`,
//! [`ConsumerProgress::is_ready`] turns false for `/health/ready` until the dependency is back.
//!
//! What waits while an event fails is [`ConsumerSettings::key_order`]:
//!
//! - `partition` (the default): a retrying event holds up its whole partition, and once it is
//!   dead-lettered the partition moves on. Later events of its key are handled normally: order
//!   is kept among the events that are handled, and a handler that cannot apply an event without
//!   the missing one (an `OrderShipped` for an order it never saw) fails that event on its own,
//!   which sends it to the dead-letter topic as well. Redriving then replays both, in their order.
//! - `key` (transactional offset mode only): an event that fails for good in-line (permanently,
//!   or retryably through its `retry` budget) blocks its key on its partition, and the partition
//!   moves on. Every later event of a blocked key is parked, in order, in the `eventline_parked`
//!   table of the offset store's database, instead of being handled; other keys keep flowing.
//!   The blocking event is parked too, as its key's head: a retryable one is retried from there
//!   with [`ConsumerSettings::parked_retry`] backoff (each try a full in-line `retry` round)
//!   until it succeeds or those rounds are spent, when it is dead-lettered; a permanent one is
//!   dead-lettered at once. When the head succeeds, the key's parked events are handed to the
//!   handler in order, as released batches ([`Batch::is_released`]), and the key unblocks once
//!   none is left; an event among them that fails for good becomes the new head. A dead-lettered
//!   head waits for its redrive: when an event with its key and event id comes back (through the
//!   retry topic, or its own topic) and succeeds, its transaction deletes the head, and the
//!   key's parked events follow. Events without a key cannot block one: they fail as with
//!   `partition`. On the retry topic, whose partition mixes the keys of every partition, nothing
//!   blocks: a redrive that fails again is dead-lettered again and its key stays blocked.
//!
//!   The handler contract is unchanged: save [`Batch::positions`] whole (a [`Positions`]) with
//!   [`OffsetStore::save`] in the transaction of the batch's effects. For a released batch it
//!   moves no offset (its events lie before the saved offset already) and deletes the batch's
//!   parked rows instead, so they leave the store with their effects or not at all. The runtime
//!   writes parked rows before any offset that passes them is saved, and releases a row only
//!   once the saved offset lies past it: a crash in between reads the events again, finds their
//!   key blocked and parks them onto the same rows; nothing is lost or applied twice. Blocked
//!   keys live in the table, so they survive restarts and rebalances: a partition's worker reads
//!   them when it starts, and reads the table again at least every second while any is blocked
//!   (a dead head may be resolved by the worker of the retry topic). A key blocking and
//!   unblocking are logged once each; `eventline_consumer_parked_events` counts the parked
//!   events (heads included) of the partitions a consumer owns.
//!
//! Redriving (`eventline dlq redrive`) writes a dead letter again, with its key, value and event
//! id unchanged: to its original topic, where every group reading it sees it again (groups that
//! applied it drop it by event id), or by default to the group's retry topic
//! ([`ConsumerSettings::retry_topic`], `<group>.retry`), which the runtime creates and reads
//! besides `topics`, so only the failing group sees it. Either way a redriven event is a new
//! record: it comes after every event of its key that was written in the meantime, and the
//! retry topic's one partition interleaves keys from every partition. A handler must accept an
//! event late (an `OrderPlaced` after its `OrderShipped`) or fail it again.
//!
//! # Brokers
//!
//! Uses consumer groups (eager or cooperative rebalancing), committed offsets, watermarks,
//! offsets-for-times and CreateTopics (for the dead-letter and retry topics); no transactions,
//! OffsetDelete, DescribeConsumerGroups or ListGroups.

mod config;
mod context;
pub mod dead_letter;
mod decode;
mod handler;
pub mod lag;
pub mod members;
pub mod metrics;
pub mod offsets;
mod outage;
mod parked;
mod partition;
mod progress;
mod release;
mod report;
mod retry;
mod runtime;
mod start;

pub use config::{
    ConsumerSettings, KeyOrder, OffsetMode, OutagePolicy, RetryPolicy, SettingsError, StartPosition,
    DEAD_LETTER_SUFFIX, RETRY_SUFFIX,
};
pub use dead_letter::{DeadLetterInfo, DeadLetterReason};
pub use decode::DecoderError;
pub use handler::{Batch, Delivered, EventError, Handler, HandlerError, PauseScope, Positions};
pub use lag::{group_lag, OffsetSource, PartitionLag};
pub use members::{Member, MemberRegistry, MemberRegistryError, HEARTBEAT_INTERVAL, MEMBER_TTL};
pub use metrics::{ConsumerMetrics, Outcome};
pub use offsets::{OffsetStore, OffsetStoreError, PartitionOffset, SavePositions};
pub use outage::Outage;
pub use parked::ParkedId;
pub use progress::ConsumerProgress;
pub use runtime::ConsumerRuntime;
pub use start::{offsets_of, TopicPartition};

use rdkafka::error::KafkaError;

use crate::kafka::admin::AdminError;

/// Why a consumer could not start or could not go on.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Decoder(#[from] DecoderError),
    #[error("offset_mode is transactional but no offset store was given (ConsumerRuntime::with_offset_store)")]
    MissingOffsetStore,
    #[error("an offset store was given but offset_mode is kafka; set offset_mode = \"transactional\"")]
    UnexpectedOffsetStore,
    #[error("topic {0} does not exist; create it first (eventline setup)")]
    UnknownTopic(String),
    #[error("cannot list or create topics")]
    Topics(#[source] AdminError),
    #[error("cannot create the Kafka client")]
    Create(#[source] KafkaError),
    #[error("cannot subscribe")]
    Subscribe(#[source] KafkaError),
    #[error("cannot register the consumer metrics")]
    Metrics(#[source] prometheus::Error),
    #[error("cannot start the consumer thread")]
    Thread(#[source] std::io::Error),
    #[error("the consumer thread panicked")]
    ThreadPanicked,
    #[error("the Kafka consumer failed for good")]
    Fatal(#[source] KafkaError),
    #[error("the worker of {topic} partition {partition} stopped unexpectedly (the handler panicked?)")]
    WorkerFailed { topic: String, partition: i32 },
}
