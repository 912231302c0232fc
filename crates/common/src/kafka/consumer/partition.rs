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
use super::handler::{Delivered, Handler};
use super::offsets::PartitionOffset;
use super::retry::{Effects, Executor, Stopped};

/// A safety net: look at the queue this often even without a wake-up.
const IDLE_REPOLL: Duration = Duration::from_millis(500);

/// Everything a partition worker needs besides its queue.
pub(crate) struct Engine<H> {
    pub shared: Arc<Shared>,
    pub handler: Arc<H>,
    pub decoder: Decoder,
    pub dead_letters: DeadLetterProducer,
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
        let worker = Worker {
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

struct Worker<H> {
    engine: Arc<Engine<H>>,
    consumer: Arc<KafkaConsumer>,
    queue: PartitionQueue<RuntimeContext>,
    wake: Arc<Notify>,
    stop: CancellationToken,
    topic: Arc<str>,
    partition: i32,
    /// The offset expected next from the queue; anything below is stale (before a seek).
    fetch_next: i64,
}

impl<H: Handler> Worker<H> {
    async fn run(mut self) {
        while let Some(batch) = self.next_batch().await {
            if self.process(batch).await.is_err() {
                break;
            }
        }
        tracing::debug!("partition worker stopped");
    }

    async fn next_batch(&mut self) -> Option<Vec<OwnedMessage>> {
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
        let mut effects = PartitionEffects {
            dead_letters: &engine.dead_letters,
            shared,
            consumer: &self.consumer,
            raw: &batch,
            stop: &self.stop,
            covered: None,
        };
        let mut events: Vec<Delivered> = Vec::with_capacity(batch.len());
        for (message, decoded) in batch.iter().zip(decoded) {
            match decoded {
                Decoded::Event(event) => events.push(*event),
                Decoded::Skip => shared.metrics.skipped.inc(),
                Decoded::Poison { reason, error } => effects.send(message, reason, &error, 0).await?,
            }
        }
        let executor = Executor {
            handler: engine.handler.as_ref(),
            policy: &shared.settings.retry,
            outage: &shared.settings.outage,
            outages: shared.progress.outages(),
            metrics: &shared.metrics,
            stop: &self.stop,
            group: &shared.group,
            topic: &self.topic,
            partition: self.partition,
        };
        executor.run(events, end, &mut effects).await?;
        if effects.covered != Some(end) {
            self.store_end(end).await?;
            effects.mark(end);
        }
        Ok(())
    }

    /// Decodes every record; while the schema registry cannot be reached, backs off and tries
    /// again (the partition waits, in order).
    async fn decode_all(&self, batch: &[OwnedMessage]) -> Result<Vec<Decoded>, Stopped> {
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

async fn pause(shared: &Shared, stop: &CancellationToken, attempt: u32) -> Result<(), Stopped> {
    let delay = shared.settings.retry.backoff(attempt, rand::random::<f64>());
    tokio::select! {
        () = tokio::time::sleep(delay) => Ok(()),
        () = stop.cancelled() => Err(Stopped),
    }
}

/// The executor's view of the partition: dead letters, and progress after each handler call.
struct PartitionEffects<'a> {
    dead_letters: &'a DeadLetterProducer,
    shared: &'a Shared,
    consumer: &'a KafkaConsumer,
    raw: &'a [OwnedMessage],
    stop: &'a CancellationToken,
    /// The next offset the last successful handler call saved.
    covered: Option<i64>,
}

impl PartitionEffects<'_> {
    /// Writes one record to the dead-letter topic, retrying until acknowledged or stopped.
    async fn send(
        &self,
        message: &OwnedMessage,
        reason: DeadLetterReason,
        error: &str,
        attempts: u32,
    ) -> Result<(), Stopped> {
        let mut attempt = 0;
        loop {
            match self.dead_letters.send(message, reason, error, attempts).await {
                Ok(()) => break,
                Err(failure) => {
                    attempt += 1;
                    tracing::warn!(error = %failure, attempt, dead_letter_topic = self.dead_letters.topic(), "cannot write to the dead-letter topic; retrying");
                    pause(self.shared, self.stop, attempt).await?;
                }
            }
        }
        self.shared.metrics.dead_lettered(reason);
        tracing::warn!(
            offset = message.offset(),
            event_type = raw_event_type(message).unwrap_or_default(),
            reason = reason.as_str(),
            attempts,
            error,
            dead_letter_topic = self.dead_letters.topic(),
            "event dead-lettered"
        );
        Ok(())
    }

    /// Records progress: the next Kafka commit and the in-memory position.
    fn mark(&self, next_offset: i64) {
        let Some(first) = self.raw.first() else { return };
        let mut tpl = TopicPartitionList::new();
        let stored = tpl
            .add_partition_offset(first.topic(), first.partition(), Offset::Offset(next_offset))
            .and_then(|()| self.consumer.store_offsets(&tpl));
        if let Err(error) = stored {
            tracing::warn!(%error, next_offset, "cannot store the offset for the next commit");
        }
        self.shared.progress.advance(first.topic(), first.partition(), next_offset);
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
        match self.raw.binary_search_by_key(&event.offset, |m| m.offset()) {
            Ok(index) => self.send(&self.raw[index], reason, &error, attempts).await,
            Err(_) => {
                tracing::error!(offset = event.offset, "the event to dead-letter is not in its batch");
                Ok(())
            }
        }
    }

    fn applied(&mut self, next_offset: i64, count: usize) {
        self.covered = Some(next_offset);
        self.shared.progress.add_handled(count);
        self.mark(next_offset);
    }
}
