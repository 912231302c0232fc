//! The librdkafka consumer context: rebalances, run on the consumer's own thread (see
//! [`runtime`](super::runtime)), where they may block until the async side has done its part.
//!
//! - Assigned: find where each partition continues (the offset store in the transactional mode,
//!   the group's committed offsets in the Kafka mode; the start position, recorded at once, when
//!   there is none), give each partition its own queue and worker task, then assign with those
//!   explicit offsets. The queues are split before `assign`, so no record of an assigned
//!   partition ever reaches the consumer's main queue.
//! - Revoked: stop the partitions' workers after their in-flight batch, wait for them, commit
//!   synchronously, then unassign, so the next owner starts exactly where this one stopped.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::TopicPartitionList;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::config::ConsumerSettings;
use super::metrics::GroupMetrics;
use super::offsets::{OffsetStore, OffsetStoreError, PartitionOffset};
use super::progress::ConsumerProgress;
use super::start::{self, TopicPartition};

pub(crate) type KafkaConsumer = BaseConsumer<RuntimeContext>;

/// How long a revoke or shutdown waits for a partition's in-flight batch before abandoning it
/// (safe: an abandoned batch's offsets were not stored, so the next owner handles it again).
pub(crate) const WORKER_GRACE: Duration = Duration::from_secs(30);

/// What the consumer thread and the partition workers share.
pub(crate) struct Shared {
    pub group: Arc<str>,
    pub settings: ConsumerSettings,
    pub offsets: Option<OffsetStore>,
    pub metrics: GroupMetrics,
    pub progress: ConsumerProgress,
    pub handle: tokio::runtime::Handle,
    /// Cancelled when the consumer stops; every worker's token is a child of it.
    pub token: CancellationToken,
    stopping: AtomicBool,
}

impl Shared {
    pub(crate) fn new(
        group: Arc<str>,
        settings: ConsumerSettings,
        offsets: Option<OffsetStore>,
        metrics: GroupMetrics,
        progress: ConsumerProgress,
        token: CancellationToken,
    ) -> Self {
        let handle = tokio::runtime::Handle::current();
        Self { group, settings, offsets, metrics, progress, handle, token, stopping: AtomicBool::new(false) }
    }

    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.token.cancel();
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst) || self.token.is_cancelled()
    }

    /// Runs `future` on the runtime and waits for it on this (non-async) thread; `None` when
    /// the runtime is gone.
    pub(crate) fn block_on<F>(&self, future: F) -> Option<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::channel();
        self.handle.spawn(async move {
            let _receiver_gone = tx.send(future.await);
        });
        rx.recv().ok()
    }
}

/// A running partition worker.
pub(crate) struct WorkerHandle {
    pub stop: CancellationToken,
    pub join: JoinHandle<()>,
}

/// Starts the worker of one partition (implemented by the engine, which knows the handler).
pub(crate) trait SpawnWorker: Send + Sync + 'static {
    fn spawn(
        self: Arc<Self>,
        consumer: Arc<KafkaConsumer>,
        queue: PartitionQueue<RuntimeContext>,
        topic: &str,
        partition: i32,
        next_offset: i64,
    ) -> WorkerHandle;
}

#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Store(#[from] OffsetStoreError),
    #[error("the async runtime is gone")]
    RuntimeGone,
}

pub(crate) struct RuntimeContext {
    shared: Arc<Shared>,
    spawner: Arc<dyn SpawnWorker>,
    consumer: OnceLock<Weak<KafkaConsumer>>,
    workers: Mutex<BTreeMap<TopicPartition, WorkerHandle>>,
}

impl ClientContext for RuntimeContext {}

impl ConsumerContext for RuntimeContext {
    fn rebalance(&self, consumer: &KafkaConsumer, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => self.on_assign(consumer, tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => self.on_revoke(consumer, tpl),
            other => {
                tracing::error!(group = %self.shared.group, error = %RDKafkaErrorCode::from(other), "rebalance failed; dropping the assignment");
                self.stop_workers(None);
                commit(consumer, &self.shared.group);
                if let Err(error) = consumer.unassign() {
                    tracing::warn!(group = %self.shared.group, %error, "cannot unassign");
                }
            }
        }
    }
}

impl RuntimeContext {
    pub(crate) fn new(shared: Arc<Shared>, spawner: Arc<dyn SpawnWorker>) -> Self {
        Self { shared, spawner, consumer: OnceLock::new(), workers: Mutex::default() }
    }

    /// Lets rebalances split partition queues (which needs the consumer's `Arc`).
    pub(crate) fn set_consumer(&self, consumer: &Arc<KafkaConsumer>) {
        let _already_set = self.consumer.set(Arc::downgrade(consumer));
    }

    fn workers(&self) -> MutexGuard<'_, BTreeMap<TopicPartition, WorkerHandle>> {
        self.workers.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn on_assign(&self, consumer: &KafkaConsumer, tpl: &TopicPartitionList) {
        let group = &self.shared.group;
        let partitions = start::partitions_of(tpl);
        let Some(owner) = self.consumer.get().and_then(Weak::upgrade) else {
            tracing::warn!(%group, "assignment while the consumer is closing; ignored");
            return;
        };
        let Some(starts) = self.resolve_starts(consumer, &partitions) else {
            return;
        };
        let mut assignment = BTreeMap::new();
        {
            let mut workers = self.workers();
            for (key, next_offset) in starts {
                let Some(queue) = owner.split_partition_queue(&key.0, key.1) else {
                    tracing::error!(%group, topic = %key.0, partition = key.1, "cannot open the partition queue");
                    continue;
                };
                self.shared.progress.assign(&key.0, key.1, next_offset);
                let worker = self.spawner.clone().spawn(owner.clone(), queue, &key.0, key.1, next_offset);
                workers.insert(key.clone(), worker);
                assignment.insert(key, next_offset);
            }
        }
        tracing::info!(%group, partitions = ?assignment, "partitions assigned (topic, partition) → next offset");
        let result = start::with_offsets(&assignment).and_then(|tpl| match consumer.rebalance_protocol() {
            RebalanceProtocol::Cooperative => consumer.incremental_assign(&tpl),
            _ => consumer.assign(&tpl),
        });
        if let Err(error) = result {
            tracing::error!(%group, %error, "cannot assign partitions");
        }
    }

    fn on_revoke(&self, consumer: &KafkaConsumer, tpl: &TopicPartitionList) {
        let partitions = start::partitions_of(tpl);
        self.stop_workers(Some(&partitions));
        commit(consumer, &self.shared.group);
        for (topic, partition) in &partitions {
            self.shared.progress.revoke(topic, *partition);
            self.shared.metrics.forget_lag(topic, *partition);
        }
        let result = match consumer.rebalance_protocol() {
            RebalanceProtocol::Cooperative => consumer.incremental_unassign(tpl),
            _ => consumer.unassign(),
        };
        if let Err(error) = result {
            tracing::warn!(group = %self.shared.group, %error, "cannot unassign");
        }
        tracing::info!(group = %self.shared.group, partitions = ?partitions, "partitions revoked");
    }

    /// Where each partition continues; retried until it can be read, `None` when stopping.
    fn resolve_starts(
        &self,
        consumer: &KafkaConsumer,
        partitions: &[TopicPartition],
    ) -> Option<BTreeMap<TopicPartition, i64>> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.try_resolve_starts(consumer, partitions) {
                Ok(starts) => return Some(starts),
                Err(error) if !self.shared.is_stopping() => {
                    let delay =
                        self.shared.settings.retry.backoff(attempt, rand::random::<f64>()).min(Duration::from_secs(5));
                    tracing::warn!(group = %self.shared.group, %error, attempt, "cannot read where the assigned partitions continue; retrying");
                    std::thread::sleep(delay);
                }
                Err(_) => return None,
            }
        }
    }

    fn try_resolve_starts(
        &self,
        consumer: &KafkaConsumer,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, i64>, StartError> {
        let group = self.shared.group.to_string();
        let mut starts = match &self.shared.offsets {
            Some(store) => {
                let (store, group, partitions) = (store.clone(), group.clone(), partitions.to_vec());
                self.shared
                    .block_on(async move { load_stored(&store, &group, &partitions).await })
                    .ok_or(StartError::RuntimeGone)??
            }
            None => start::committed(consumer, partitions)?,
        };
        let missing: Vec<TopicPartition> = partitions.iter().filter(|p| !starts.contains_key(*p)).cloned().collect();
        if !missing.is_empty() {
            let resolved = start::resolve(consumer, &missing, self.shared.settings.start)?;
            tracing::info!(%group, start = %self.shared.settings.start, partitions = ?resolved, "no stored offsets; starting at the configured position");
            self.record_start(consumer, &resolved);
            starts.extend(resolved);
        }
        Ok(starts)
    }

    /// Records a new group's start at once, so a restart before its first event still starts
    /// there (for `latest` or a date-time) rather than at a later end of the log.
    fn record_start(&self, consumer: &KafkaConsumer, starts: &BTreeMap<TopicPartition, i64>) {
        let group = self.shared.group.to_string();
        let outcome = match &self.shared.offsets {
            Some(store) => {
                let store = store.clone();
                let positions: Vec<PartitionOffset> = starts
                    .iter()
                    .map(|((topic, partition), next_offset)| PartitionOffset {
                        topic: topic.clone(),
                        partition: *partition,
                        next_offset: *next_offset,
                    })
                    .collect();
                let group = group.clone();
                match self.shared.block_on(async move { store.store_if_absent(&group, &positions).await }) {
                    Some(result) => result.map_err(|e| e.to_string()),
                    None => Err("the async runtime is gone".to_owned()),
                }
            }
            None => start::with_offsets(starts)
                .and_then(|tpl| consumer.commit(&tpl, CommitMode::Sync))
                .map_err(|e| e.to_string()),
        };
        if let Err(error) = outcome {
            tracing::warn!(%group, %error, "cannot record the start position; it is resolved again next time");
        }
    }

    /// Stops the workers of `partitions` (all when `None`) after their in-flight batch, and
    /// waits for them (at most [`WORKER_GRACE`] each).
    pub(crate) fn stop_workers(&self, partitions: Option<&[TopicPartition]>) {
        let stopping: Vec<(TopicPartition, WorkerHandle)> = {
            let mut workers = self.workers();
            match partitions {
                None => std::mem::take(&mut *workers).into_iter().collect(),
                Some(keys) => keys.iter().filter_map(|key| workers.remove_entry(key)).collect(),
            }
        };
        if stopping.is_empty() {
            return;
        }
        for (_, worker) in &stopping {
            worker.stop.cancel();
        }
        let group = self.shared.group.clone();
        let _runtime_gone = self.shared.block_on(async move {
            for ((topic, partition), worker) in stopping {
                let mut join = worker.join;
                match tokio::time::timeout(WORKER_GRACE, &mut join).await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => tracing::error!(%group, %topic, partition, %error, "partition worker failed"),
                    Err(_) => {
                        join.abort();
                        tracing::warn!(%group, %topic, partition, grace = ?WORKER_GRACE, "in-flight batch did not finish; abandoned (it is handled again by the next owner)");
                    }
                }
            }
        });
    }

    /// A worker that ended without being asked to (it panicked).
    pub(crate) fn failed_worker(&self) -> Option<TopicPartition> {
        self.workers()
            .iter()
            .find(|(_, worker)| worker.join.is_finished() && !worker.stop.is_cancelled())
            .map(|(key, _)| key.clone())
    }
}

async fn load_stored(
    store: &OffsetStore,
    group: &str,
    partitions: &[TopicPartition],
) -> Result<BTreeMap<TopicPartition, i64>, OffsetStoreError> {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in partitions {
        by_topic.entry(topic.as_str()).or_default().push(*partition);
    }
    let mut starts = BTreeMap::new();
    for (topic, partitions) in by_topic {
        for (partition, next) in store.load(group, topic, &partitions).await? {
            starts.insert((topic.to_owned(), partition), next);
        }
    }
    Ok(starts)
}

/// Commits the stored offsets now and waits for the broker (nothing stored is fine).
pub(crate) fn commit(consumer: &KafkaConsumer, group: &str) {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(error) => tracing::warn!(%group, %error, "cannot commit offsets"),
    }
}
