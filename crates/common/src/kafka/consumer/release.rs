//! Handing parked events back to the handler (`key_order = "key"`): one blocked key at a time,
//! its head and the `parked` rows right behind it (up to `batch_max_size`), through the same
//! [`Executor`] as any batch, as released batches ([`Batch::is_released`]).
//!
//! - A handler call that succeeds deleted its rows in its own transaction (they are listed on
//!   [`Positions::released`], which [`OffsetStore::save`] deletes). Rows still there afterwards
//!   mean the handler saved only the offsets (`&batch.positions()[..]`): the runtime deletes
//!   them itself and says so, since a crash in between would hand them over again.
//! - An event that fails for good in-line becomes (or stays) its key's head: state `retry` with
//!   the next [`parked_retry`](super::ConsumerSettings::parked_retry) backoff, or, once those
//!   rounds are spent or when it failed permanently, dead-lettered and `dead`. Rows behind it
//!   stay where they are.
//! - Duplicates (already applied) and events of types the consumer no longer reads are deleted.
//!
//! [`Batch::is_released`]: super::Batch::is_released
//! [`Positions::released`]: super::Positions::released
//! [`OffsetStore::save`]: super::OffsetStore::save

use std::collections::BTreeMap;

use rdkafka::message::OwnedMessage;
use tokio_util::sync::CancellationToken;

use super::context::Shared;
use super::dead_letter::{DeadLetterProducer, DeadLetterReason};
use super::decode::Decoded;
use super::handler::{Delivered, Handler, Positions};
use super::offsets::PartitionOffset;
use super::parked::{now_ms, ParkedId, ParkedRecord, ParkedState, ParkedStore};
use super::partition::{retry_db, send_dead_letter, Worker};
use super::retry::{Effects, Executor, Stopped};

/// The executor's view of one released run.
pub(crate) struct Released<'a> {
    shared: &'a Shared,
    dead_letters: &'a DeadLetterProducer,
    store: &'a ParkedStore,
    stop: &'a CancellationToken,
    rows: BTreeMap<i64, ParkedRecord>,
    messages: BTreeMap<i64, OwnedMessage>,
    /// Rows of successful handler calls (their transactions should have deleted them).
    handled: Vec<ParkedId>,
    /// Rows to delete without a handler call.
    dropped: Vec<ParkedId>,
}

impl Released<'_> {
    /// Releases the due head of `key` on `worker`'s partition and the parked events behind it.
    pub(crate) async fn run<H: Handler>(worker: &Worker<H>, key: &str) -> Result<(), Stopped> {
        let engine = worker.engine.clone();
        let shared = &engine.shared;
        let Some(store) = &engine.parked else { return Ok(()) };
        let (topic, partition, limit) = (worker.topic.clone(), worker.partition, shared.settings.batch_max_size);
        let rows = retry_db(shared, &worker.stop, "read parked events", || store.run_of(&topic, partition, key, limit))
            .await?;
        let messages: Vec<OwnedMessage> = rows.iter().map(ParkedRecord::to_message).collect();
        let decoded = worker.decode_all(&messages).await?;
        let mut released = Released {
            shared,
            dead_letters: &engine.dead_letters,
            store,
            stop: &worker.stop,
            rows: BTreeMap::new(),
            messages: BTreeMap::new(),
            handled: Vec::new(),
            dropped: Vec::new(),
        };
        let mut events: Vec<Delivered> = Vec::with_capacity(rows.len());
        for ((row, message), decoded) in rows.into_iter().zip(messages).zip(decoded) {
            match decoded {
                Decoded::Event(event) => events.push(*event),
                Decoded::Skip => {
                    released.dropped.push(row.id);
                    continue;
                }
                Decoded::Poison { reason, error } => {
                    if events.is_empty() {
                        // Unreadable now (its schema is gone): it cannot be handled, ever.
                        let offset = row.id.offset;
                        released.rows.insert(offset, row);
                        released.messages.insert(offset, message);
                        released.fail(offset, reason, error, 0).await?;
                    }
                    break;
                }
            }
            released.messages.insert(row.id.offset, message);
            released.rows.insert(row.id.offset, row);
        }
        if !events.is_empty() {
            tracing::debug!(key, events = events.len(), first_offset = events[0].offset, "releasing parked events");
            let executor = Executor::of_partition(
                engine.handler.as_ref(),
                shared,
                &worker.stop,
                &worker.topic,
                worker.partition,
                true,
            );
            executor.run(events, worker.saved, &mut released).await?;
        }
        released.finish().await
    }

    /// Deletes the rows that need no more handling; warns when the handler left its rows.
    async fn finish(self) -> Result<(), Stopped> {
        let (shared, stop, store) = (self.shared, self.stop, self.store);
        if !self.dropped.is_empty() {
            retry_db(shared, stop, "delete parked events", || store.delete(&self.dropped)).await?;
        }
        if !self.handled.is_empty() {
            let left = retry_db(shared, stop, "delete released events", || store.delete(&self.handled)).await?;
            if left > 0 {
                tracing::error!(
                    left,
                    "released events were handled but the handler's transaction did not delete them: pass \
                     batch.positions() itself to OffsetStore::save (a crash before this clean-up hands them over again)"
                );
            }
        }
        Ok(())
    }

    /// The row at `offset` failed for good in this round: retry it later, or dead-letter it.
    async fn fail(
        &mut self,
        offset: i64,
        reason: DeadLetterReason,
        error: String,
        attempts: u32,
    ) -> Result<(), Stopped> {
        let (Some(row), Some(message)) = (self.rows.get_mut(&offset), self.messages.get(&offset)) else {
            return Ok(());
        };
        let policy = &self.shared.settings.parked_retry;
        row.attempts = row.attempts.saturating_add(attempts);
        row.error = Some(error.clone());
        row.reason = Some(reason);
        if row.state == ParkedState::Retry {
            row.rounds = row.rounds.saturating_add(1);
        }
        if reason == DeadLetterReason::RetriesExhausted && row.rounds < policy.max_attempts {
            let delay = policy.backoff(row.rounds.saturating_add(1), rand::random::<f64>());
            row.state = ParkedState::Retry;
            row.next_try_at_ms = now_ms().saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
            tracing::warn!(key = row.key, offset, rounds = row.rounds, retry_in = ?delay, error, "blocking event failed again; its key stays blocked, retried from the parked store");
        } else {
            send_dead_letter(self.dead_letters, self.shared, self.stop, message, reason, &error, row.attempts).await?;
            row.state = ParkedState::Dead;
            tracing::warn!(
                key = row.key,
                offset,
                reason = reason.as_str(),
                "blocking event dead-lettered; its key stays blocked until it is redriven and succeeds"
            );
        }
        let row = row.clone();
        retry_db(self.shared, self.stop, "update a parked event", || self.store.update(&row)).await
    }
}

fn ids(rows: &BTreeMap<i64, ParkedRecord>, events: &[Delivered]) -> Vec<ParkedId> {
    events.iter().filter_map(|event| rows.get(&event.offset)).map(|row| row.id.clone()).collect()
}

impl Effects for Released<'_> {
    /// Only for events without a key, which are never parked.
    async fn dead_letter(
        &mut self,
        event: &Delivered,
        reason: DeadLetterReason,
        error: String,
        attempts: u32,
    ) -> Result<(), Stopped> {
        self.fail(event.offset, reason, error, attempts).await
    }

    fn applied(&mut self, _next_offset: i64, events: &[Delivered]) {
        self.handled.extend(ids(&self.rows, events));
        self.shared.progress.add_handled(events.len());
    }

    fn positions(&self, _position: PartitionOffset, events: &[Delivered]) -> Positions {
        Positions::new(Vec::new(), ids(&self.rows, events))
    }

    async fn block(
        &mut self,
        event: &Delivered,
        reason: DeadLetterReason,
        error: String,
        attempts: u32,
    ) -> Result<(), Stopped> {
        self.fail(event.offset, reason, error, attempts).await
    }

    fn dropped(&mut self, events: &[Delivered]) {
        self.dropped.extend(ids(&self.rows, events));
    }
}
