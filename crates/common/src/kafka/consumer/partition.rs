//! The worker of one assigned partition: a task reading the partition's own queue, in order.
//!
//! Each round it takes a batch (up to `batch_max_size` records, waiting at most `batch_linger`
//! once the first is there), decodes it, dead-letters what cannot be read, hands the events to
//! the [`Executor`] (handler calls, retries, isolation), then records where the partition
//! continues: `store_offsets` for the next Kafka commit, the in-memory progress, and, in the
//! transactional mode, the offset store when no handler transaction already covered the end of
//! the batch (skipped or dead-lettered events last). Backoff waits only this partition.
//!
//! While the executor waits (a retry's backoff, an unavailable dependency, the consumer's
//! gate), the worker takes nothing from its queue; librdkafka fills the queue up to the
//! prefetch limit (`queued.min.messages`, `queued.max.messages.kbytes`, per partition) and then
//! stops fetching for this partition alone. The consumer thread keeps polling meanwhile, so the
//! group membership and `max.poll.interval.ms` are not at stake however long a pause lasts.
//!
//! With `key_order = "key"` the worker also keeps its partition's blocked keys ([`KeyBlocks`],
//! read from the parked store when it starts): events of a blocked key are parked before the
//! executor sees the batch, and the executor blocks the key of an event that fails for good.
//! Between batches, and at least every [`PARKED_POLL`] while keys are blocked, it reads the
//! store again and hands the heads that are due to the handler ([`release`](super::release)).
//! A redriven event (on the retry topic, or again on its own topic) whose event id is a
//! dead-lettered head's is handled with that head listed on its [`Positions`](super::Positions),
//! so its transaction deletes it; the owner of the head's partition then releases what follows.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::Consumer;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::context::{KafkaConsumer, RuntimeContext, Shared, SpawnWorker, WorkerHandle};
use super::dead_letter::{DeadLetterProducer, DeadLetterReason};
use super::decode::{raw_event_type, Decoded, Decoder};
use super::handler::{Delivered, Handler, Positions};
use super::offsets::PartitionOffset;
use super::parked::{now_ms, KeyBlocks, ParkedId, ParkedRecord, ParkedState, ParkedStore};
use super::release::Released;
use super::retry::{Effects, Executor, Stopped};

/// A safety net: look at the queue this often even without a wake-up.
const IDLE_REPOLL: Duration = Duration::from_millis(500);
/// While keys of the partition are blocked, the parked store is read at least this often: a
/// dead head is resolved by whichever worker handles its redrive.
pub(crate) const PARKED_POLL: Duration = Duration::from_secs(1);

/// Everything a partition worker needs besides its queue.
pub(crate) struct Engine<H> {
    pub shared: Arc<Shared>,
    pub handler: Arc<H>,
    pub decoder: Decoder,
    pub dead_letters: DeadLetterProducer,
    /// With `key_order = "key"`.
    pub parked: Option<ParkedStore>,
}

impl<H: Handler> SpawnWorker for Engine<H> {
    fn spawn(
        self: Arc<Self>,
        consumer: Arc<KafkaConsumer>,
        mut queue: PartitionQueue<RuntimeContext>,
        topic: &str,
        partition: i32,
        next_offset: i64,
    ) -> WorkerHandle {
        let wake = Arc::new(Notify::new());
        let notify = wake.clone();
        queue.set_nonempty_callback(move || notify.notify_one());
        let stop = self.shared.token.child_token();
        let span = tracing::info_span!("partition", group = %self.shared.group, topic, partition);
        // The retry topic interleaves keys of every partition: it blocks none (a redrive that
        // fails again is dead-lettered again), it only resolves dead heads.
        let blocks = (self.parked.is_some() && topic != self.shared.settings.retry_topic())
            .then(|| KeyBlocks::new(self.shared.metrics.parked.clone()));
        let worker = Worker {
            blocks,
            saved: next_offset,
            refreshed: Instant::now(),
            engine: self.clone(),
            consumer,
            queue,
            wake,
            stop: stop.clone(),
            topic: Arc::from(topic),
            partition,
            fetch_next: next_offset,
        };
        let join = self.shared.handle.spawn(worker.run().instrument(span));
        WorkerHandle { stop, join }
    }
}

pub(crate) struct Worker<H> {
    /// The blocked keys of this partition (`key_order = "key"`, not the retry topic).
    pub(crate) blocks: Option<KeyBlocks>,
    /// The offset saved last: every event before it was handled, dead-lettered or parked.
    pub(crate) saved: i64,
    /// When the parked store was read last.
    refreshed: Instant,
    pub(crate) engine: Arc<Engine<H>>,
    consumer: Arc<KafkaConsumer>,
    queue: PartitionQueue<RuntimeContext>,
    wake: Arc<Notify>,
    pub(crate) stop: CancellationToken,
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i32,
    /// The offset expected next from the queue; anything below is stale (before a seek).
    fetch_next: i64,
}

impl<H: Handler> Worker<H> {
    async fn run(mut self) {
        if self.refresh(true).await.is_err() {
            return;
        }
        while let Some(batch) = self.next_batch(self.parked_due()).await {
            if self.process(batch).await.is_err() || self.release().await.is_err() {
                break;
            }
        }
        tracing::debug!("partition worker stopped");
    }

    /// When the parked store needs a look without a new record: now when a head is due, else
    /// at the next poll or retry time; never without blocked keys.
    fn parked_due(&self) -> Option<Instant> {
        let blocks = self.blocks.as_ref().filter(|blocks| !blocks.is_empty())?;
        let now = now_ms();
        if !blocks.due(now, self.saved).is_empty() {
            return Some(Instant::now());
        }
        let poll = self.refreshed + PARKED_POLL;
        let retry = blocks
            .next_retry_ms()
            .map(|at| Instant::now() + Duration::from_millis(at.saturating_sub(now).max(0).unsigned_abs()));
        Some(retry.map_or(poll, |retry| retry.min(poll)))
    }

    /// Reads the partition's blocked keys from the parked store (`loaded`: on start).
    async fn refresh(&mut self, loaded: bool) -> Result<(), Stopped> {
        let (Some(store), Some(_)) = (self.engine.parked.clone(), &self.blocks) else {
            return Ok(());
        };
        let (topic, partition) = (self.topic.clone(), self.partition);
        let (heads, parked) =
            retry_db(&self.engine.shared, &self.stop, "read the parked events", || store.heads(&topic, partition))
                .await?;
        if let Some(blocks) = &mut self.blocks {
            blocks.replace(heads, parked, loaded);
        }
        self.refreshed = Instant::now();
        Ok(())
    }

    /// Hands the due heads of blocked keys to the handler, each with the parked events behind
    /// it (up to a batch), then reads the store again.
    async fn release(&mut self) -> Result<(), Stopped> {
        let Some(blocks) = &self.blocks else { return Ok(()) };
        if blocks.is_empty() {
            return Ok(());
        }
        let mut due = blocks.due(now_ms(), self.saved);
        if due.is_empty() {
            if self.refreshed.elapsed() < PARKED_POLL {
                return Ok(());
            }
            self.refresh(false).await?;
            due = self.blocks.as_ref().map(|b| b.due(now_ms(), self.saved)).unwrap_or_default();
            if due.is_empty() {
                return Ok(());
            }
        }
        for key in due {
            Released::run(self, &key).await?;
        }
        self.refresh(false).await
    }

    async fn next_batch(&mut self, parked_due: Option<Instant>) -> Option<Vec<OwnedMessage>> {
        let max = self.engine.shared.settings.batch_max_size;
        let linger = self.engine.shared.settings.batch_linger;
        let mut batch = Vec::new();
        loop {
            if self.stop.is_cancelled() {
                return None;
            }
            self.drain(&mut batch, max);
            if !batch.is_empty() {
                break;
            }
            tokio::select! {
                biased;
                () = self.stop.cancelled() => return None,
                () = self.wake.notified() => {}
                () = sleep_until(parked_due) => return Some(batch),
                () = tokio::time::sleep(IDLE_REPOLL) => {}
            }
        }
        let deadline = Instant::now() + linger;
        while batch.len() < max && Instant::now() < deadline {
            tokio::select! {
                biased;
                () = self.stop.cancelled() => return None,
                () = self.wake.notified() => {}
                () = tokio::time::sleep_until(deadline) => {}
            }
            self.drain(&mut batch, max);
        }
        Some(batch)
    }

    /// Moves what the queue holds now into `batch`, without waiting.
    fn drain(&mut self, batch: &mut Vec<OwnedMessage>, max: usize) {
        let mut stale = 0u64;
        while batch.len() < max {
            match self.queue.poll(Duration::ZERO) {
                None => break,
                Some(Ok(message)) if message.offset() >= self.fetch_next => {
                    self.fetch_next = message.offset() + 1;
                    batch.push(message.detach());
                }
                Some(Ok(_before_the_expected_offset)) => stale += 1,
                Some(Err(error)) => tracing::warn!(%error, "fetch error on the partition"),
            }
        }
        if stale > 0 {
            // After a seek these are leftovers; otherwise the log was reset under us (a
            // recreated topic): say so rather than skip silently.
            tracing::warn!(stale, expected = self.fetch_next, "records before the expected offset were skipped");
        }
    }

    async fn process(&mut self, batch: Vec<OwnedMessage>) -> Result<(), Stopped> {
        let Some(end) = batch.last().map(|m| m.offset() + 1) else {
            return Ok(());
        };
        tracing::debug!(records = batch.len(), first_offset = batch[0].offset(), end, "batch taken");
        let decoded = self.decode_all(&batch).await?;
        let engine = self.engine.clone();
        let shared = &engine.shared;
        let mut events: Vec<Delivered> = Vec::with_capacity(batch.len());
        for (message, decoded) in batch.iter().zip(decoded) {
            match decoded {
                Decoded::Event(event) => events.push(*event),
                Decoded::Skip => shared.metrics.skipped.inc(),
                Decoded::Poison { reason, error } => {
                    send_dead_letter(&engine.dead_letters, shared, &self.stop, message, reason, &error, 0).await?;
                }
            }
        }
        let resolutions = self.resolutions(&events).await?;
        let events = self.park_blocked(events, &resolutions, &batch).await?;
        let mut effects = PartitionEffects {
            dead_letters: &engine.dead_letters,
            shared,
            raw: &batch,
            stop: &self.stop,
            covered: None,
            blocks: self.blocks.as_mut(),
            parked: engine.parked.as_ref(),
            resolutions,
            consumer: &self.consumer,
        };
        let keys = effects.blocks.is_some();
        let executor =
            Executor::of_partition(engine.handler.as_ref(), shared, &self.stop, &self.topic, self.partition, keys);
        executor.run(events, end, &mut effects).await?;
        let covered = effects.covered;
        drop(effects);
        if covered != Some(end) {
            self.store_end(end).await?;
            mark(shared, &self.consumer, &batch, end);
        }
        self.saved = end;
        Ok(())
    }

    /// For each event that is the redrive of a dead-lettered head (same key and event id), the
    /// parked rows its handler transaction deletes. Only looked up for keys that can have one:
    /// on the retry topic every key, elsewhere the keys whose head is dead-lettered.
    async fn resolutions(&self, events: &[Delivered]) -> Result<HashMap<i64, Vec<ParkedId>>, Stopped> {
        let mut resolutions = HashMap::new();
        let Some(store) = &self.engine.parked else { return Ok(resolutions) };
        for event in events {
            let Some(key) = event.key.as_deref() else { continue };
            if self.blocks.as_ref().is_some_and(|blocks| !blocks.waits_for_redrive(key)) {
                continue;
            }
            let event_id = event.envelope.id.to_string();
            let ids = retry_db(&self.engine.shared, &self.stop, "look up dead-lettered heads", || {
                store.dead_of_event(key, &event_id)
            })
            .await?;
            if !ids.is_empty() {
                tracing::info!(key, offset = event.offset, dead = ?ids, "a redriven event stands for a dead-lettered head; its success releases the key");
                resolutions.insert(event.offset, ids);
            }
        }
        Ok(resolutions)
    }

    /// Parks the events of blocked keys (but not redrives of their heads); returns the rest.
    async fn park_blocked(
        &mut self,
        events: Vec<Delivered>,
        resolutions: &HashMap<i64, Vec<ParkedId>>,
        raw: &[OwnedMessage],
    ) -> Result<Vec<Delivered>, Stopped> {
        let (Some(blocks), Some(store)) = (&self.blocks, &self.engine.parked) else {
            return Ok(events);
        };
        let (parked, go): (Vec<Delivered>, Vec<Delivered>) = events.into_iter().partition(|event| {
            event.key.as_deref().is_some_and(|key| blocks.is_blocked(key)) && !resolutions.contains_key(&event.offset)
        });
        if parked.is_empty() {
            return Ok(go);
        }
        let rows = rows_of(raw, &parked, ParkedState::Parked);
        retry_db(&self.engine.shared, &self.stop, "park events", || store.insert(&rows)).await?;
        tracing::debug!(events = rows.len(), "events of blocked keys parked");
        if let Some(blocks) = &mut self.blocks {
            blocks.add_parked(rows.len());
        }
        Ok(go)
    }

    /// Decodes every record; while the schema registry cannot be reached, backs off and tries
    /// again (the partition waits, in order).
    pub(crate) async fn decode_all(&self, batch: &[OwnedMessage]) -> Result<Vec<Decoded>, Stopped> {
        let mut attempt = 0;
        'batch: loop {
            let mut decoded = Vec::with_capacity(batch.len());
            for message in batch {
                match self.engine.decoder.decode(message, &self.topic).await {
                    Ok(one) => decoded.push(one),
                    Err(error) => {
                        attempt += 1;
                        tracing::warn!(%error, attempt, "schema registry unavailable; retrying");
                        self.pause(attempt).await?;
                        continue 'batch;
                    }
                }
            }
            return Ok(decoded);
        }
    }

    /// In the transactional mode, saves `end` when no handler transaction did.
    async fn store_end(&self, end: i64) -> Result<(), Stopped> {
        let Some(store) = &self.engine.shared.offsets else {
            return Ok(());
        };
        let positions =
            [PartitionOffset { topic: self.topic.to_string(), partition: self.partition, next_offset: end }];
        let mut attempt = 0;
        loop {
            match store.store(&self.engine.shared.group, &positions).await {
                Ok(()) => return Ok(()),
                Err(error) => {
                    attempt += 1;
                    tracing::warn!(error = %format!("{error:#}"), attempt, "cannot save the partition's offset; retrying");
                    self.pause(attempt).await?;
                }
            }
        }
    }

    async fn pause(&self, attempt: u32) -> Result<(), Stopped> {
        pause(&self.engine.shared, &self.stop, attempt).await
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Runs a parked-store query until it succeeds, backing off like the offset store's.
pub(crate) async fn retry_db<T, F, Fut>(
    shared: &Shared,
    stop: &CancellationToken,
    what: &str,
    mut query: F,
) -> Result<T, Stopped>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, sqlx::Error>>,
{
    let mut attempt = 0;
    loop {
        match query().await {
            Ok(value) => return Ok(value),
            Err(error) => {
                attempt += 1;
                tracing::warn!(%error, attempt, "cannot {what}; retrying");
                pause(shared, stop, attempt).await?;
            }
        }
    }
}

/// Rows in `state` for `events`, from their records in `raw`.
fn rows_of(raw: &[OwnedMessage], events: &[Delivered], state: ParkedState) -> Vec<ParkedRecord> {
    events
        .iter()
        .filter_map(|event| {
            let index = raw.binary_search_by_key(&event.offset, |m| m.offset()).ok()?;
            let key = event.key.as_deref()?;
            Some(ParkedRecord::of(&raw[index], key, event.envelope.id.to_string(), state))
        })
        .collect()
}

pub(crate) async fn pause(shared: &Shared, stop: &CancellationToken, attempt: u32) -> Result<(), Stopped> {
    let delay = shared.settings.retry.backoff(attempt, rand::random::<f64>());
    tokio::select! {
        () = tokio::time::sleep(delay) => Ok(()),
        () = stop.cancelled() => Err(Stopped),
    }
}

/// Writes one record to the dead-letter topic, retrying until acknowledged or stopped.
pub(crate) async fn send_dead_letter(
    dead_letters: &DeadLetterProducer,
    shared: &Shared,
    stop: &CancellationToken,
    message: &OwnedMessage,
    reason: DeadLetterReason,
    error: &str,
    attempts: u32,
) -> Result<(), Stopped> {
    let mut attempt = 0;
    loop {
        match dead_letters.send(message, reason, error, attempts).await {
            Ok(()) => break,
            Err(failure) => {
                attempt += 1;
                tracing::warn!(error = %failure, attempt, dead_letter_topic = dead_letters.topic(), "cannot write to the dead-letter topic; retrying");
                pause(shared, stop, attempt).await?;
            }
        }
    }
    shared.metrics.dead_lettered(reason);
    tracing::warn!(
        offset = message.offset(),
        event_type = raw_event_type(message).unwrap_or_default(),
        reason = reason.as_str(),
        attempts,
        error,
        dead_letter_topic = dead_letters.topic(),
        "event dead-lettered"
    );
    Ok(())
}

/// Records progress: the next Kafka commit and the in-memory position.
fn mark(shared: &Shared, consumer: &KafkaConsumer, raw: &[OwnedMessage], next_offset: i64) {
    let Some(first) = raw.first() else { return };
    let mut tpl = TopicPartitionList::new();
    let stored = tpl
        .add_partition_offset(first.topic(), first.partition(), Offset::Offset(next_offset))
        .and_then(|()| consumer.store_offsets(&tpl));
    if let Err(error) = stored {
        tracing::warn!(%error, next_offset, "cannot store the offset for the next commit");
    }
    shared.progress.advance(first.topic(), first.partition(), next_offset);
}

/// The executor's view of the partition: dead letters, blocked keys, and progress after each
/// handler call.
struct PartitionEffects<'a> {
    dead_letters: &'a DeadLetterProducer,
    shared: &'a Shared,
    consumer: &'a KafkaConsumer,
    raw: &'a [OwnedMessage],
    stop: &'a CancellationToken,
    /// The next offset the last successful handler call saved.
    covered: Option<i64>,
    blocks: Option<&'a mut KeyBlocks>,
    parked: Option<&'a ParkedStore>,
    /// Redriven events (by offset) and the dead heads their success releases.
    resolutions: HashMap<i64, Vec<ParkedId>>,
}

impl PartitionEffects<'_> {
    fn raw_of(&self, event: &Delivered) -> Option<&OwnedMessage> {
        let found = self.raw.binary_search_by_key(&event.offset, |m| m.offset()).ok().map(|index| &self.raw[index]);
        if found.is_none() {
            tracing::error!(offset = event.offset, "the event is not in its batch");
        }
        found
    }
}
impl Effects for PartitionEffects<'_> {
    async fn dead_letter(
        &mut self,
        event: &Delivered,
        reason: DeadLetterReason,
        error: String,
        attempts: u32,
    ) -> Result<(), Stopped> {
        match self.raw_of(event) {
            Some(message) => {
                send_dead_letter(self.dead_letters, self.shared, self.stop, message, reason, &error, attempts).await
            }
            None => Ok(()),
        }
    }

    fn applied(&mut self, next_offset: i64, events: &[Delivered]) {
        self.covered = Some(next_offset);
        self.shared.progress.add_handled(events.len());
        mark(self.shared, self.consumer, self.raw, next_offset);
    }

    fn positions(&self, position: PartitionOffset, events: &[Delivered]) -> Positions {
        let released = events.iter().filter_map(|e| self.resolutions.get(&e.offset)).flatten().cloned().collect();
        Positions::new(vec![position], released)
    }

    /// The event's key blocks: it becomes the key's head, retried from the parked store
    /// (`retries_exhausted`) or dead-lettered first (`permanent`).
    async fn block(
        &mut self,
        event: &Delivered,
        reason: DeadLetterReason,
        error: String,
        attempts: u32,
    ) -> Result<(), Stopped> {
        let (Some(store), Some(key), Some(message)) = (self.parked, event.key.as_deref(), self.raw_of(event)) else {
            return self.dead_letter(event, reason, error, attempts).await;
        };
        let state = match reason {
            DeadLetterReason::RetriesExhausted => ParkedState::Retry,
            _ => {
                send_dead_letter(self.dead_letters, self.shared, self.stop, message, reason, &error, attempts).await?;
                ParkedState::Dead
            }
        };
        let mut row = ParkedRecord::of(message, key, event.envelope.id.to_string(), state);
        row.reason = Some(reason);
        row.error = Some(error.clone());
        row.attempts = attempts;
        let delay = self.shared.settings.parked_retry.backoff(1, rand::random::<f64>());
        row.next_try_at_ms = now_ms().saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
        let rows = [row];
        retry_db(self.shared, self.stop, "park a blocking event", || store.insert(&rows)).await?;
        if let Some(blocks) = self.blocks.as_deref_mut() {
            blocks.block(key, rows[0].head(), reason, &error);
        }
        Ok(())
    }

    async fn park(&mut self, events: Vec<Delivered>) -> Result<(), Stopped> {
        let Some(store) = self.parked else { return Ok(()) };
        let rows = rows_of(self.raw, &events, ParkedState::Parked);
        retry_db(self.shared, self.stop, "park events", || store.insert(&rows)).await?;
        if let Some(blocks) = self.blocks.as_deref_mut() {
            blocks.add_parked(rows.len());
        }
        Ok(())
    }
}
