//! What one running consumer has done so far, in memory: the partitions it owns, where each
//! continues, how many events it handled, and whether it is waiting out an unavailable
//! dependency. A query API uses it to wait (bounded) until an event it was told about has been
//! applied; health checks use it to see assignments and readiness ([`ConsumerProgress::is_ready`]).
//!
//! It covers this process only: with several instances of a group, a partition owned by another
//! instance is not here, and [`ConsumerProgress::wait_for`] times out for it. Read the
//! transactional offset store ([`OffsetStore::has_passed`](super::OffsetStore::has_passed))
//! for the group-wide answer.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

use super::outage::{Outage, Outages};
use crate::kafka::Position;

#[derive(Clone)]
pub struct ConsumerProgress {
    inner: Arc<Inner>,
}

struct Inner {
    /// (topic, partition) → next offset, for the partitions owned right now.
    partitions: Mutex<BTreeMap<(String, i32), i64>>,
    handled: AtomicU64,
    changed: watch::Sender<u64>,
    outages: Outages,
}

impl Default for ConsumerProgress {
    fn default() -> Self {
        Self::with_outages(Outages::default())
    }
}

impl std::fmt::Debug for ConsumerProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerProgress").field("partitions", &*self.partitions()).finish()
    }
}

impl ConsumerProgress {
    /// Progress whose readiness turns false after an outage of `ready_after`.
    pub(crate) fn new(ready_after: Duration) -> Self {
        Self::with_outages(Outages::new(ready_after))
    }

    fn with_outages(outages: Outages) -> Self {
        let (changed, _) = watch::channel(0);
        Self { inner: Arc::new(Inner { partitions: Mutex::default(), handled: AtomicU64::new(0), changed, outages }) }
    }

    fn partitions(&self) -> MutexGuard<'_, BTreeMap<(String, i32), i64>> {
        self.inner.partitions.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn notify(&self) {
        self.inner.changed.send_modify(|version| *version = version.wrapping_add(1));
    }

    /// The partitions this consumer owns, with where each continues.
    pub fn assigned(&self) -> BTreeMap<(String, i32), i64> {
        self.partitions().clone()
    }

    pub fn next_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        self.partitions().get(&(topic.to_owned(), partition)).copied()
    }

    /// Events handed to a handler call that succeeded, since start.
    pub fn handled_total(&self) -> u64 {
        self.inner.handled.load(Ordering::Relaxed)
    }

    /// The longest outage this consumer is waiting out now: a partition (or the whole
    /// consumer) paused because its handler said a dependency is unavailable. `None` when
    /// every partition's handler calls go through.
    pub fn outage(&self) -> Option<Outage> {
        self.inner.outages.current()
    }

    /// For `/health/ready`: `false` while an outage has lasted longer than the consumer's
    /// `outage.ready_after`; `true` again as soon as the dependency is back. A consumer that
    /// waits out an outage is alive (it keeps its partitions and resumes by itself); it is just
    /// not doing its job.
    pub fn is_ready(&self) -> bool {
        self.inner.outages.is_ready()
    }

    pub(crate) fn outages(&self) -> &Outages {
        &self.inner.outages
    }

    /// Waits until the event at `position` has been applied here; `false` after `timeout`.
    pub async fn wait_for(&self, position: &Position, timeout: Duration) -> bool {
        let mut changes = self.inner.changed.subscribe();
        let passed = |progress: &Self| {
            progress.next_offset(&position.topic, position.partition).is_some_and(|next| next > position.offset)
        };
        let wait = async {
            loop {
                if passed(self) {
                    return true;
                }
                if changes.changed().await.is_err() {
                    return false;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.unwrap_or(false)
    }

    pub(crate) fn assign(&self, topic: &str, partition: i32, next_offset: i64) {
        self.partitions().insert((topic.to_owned(), partition), next_offset);
        self.notify();
    }

    pub(crate) fn advance(&self, topic: &str, partition: i32, next_offset: i64) {
        if let Some(next) = self.partitions().get_mut(&(topic.to_owned(), partition)) {
            *next = next_offset.max(*next);
        }
        self.notify();
    }

    pub(crate) fn add_handled(&self, count: usize) {
        self.inner.handled.fetch_add(count as u64, Ordering::Relaxed);
    }

    pub(crate) fn revoke(&self, topic: &str, partition: i32) {
        self.partitions().remove(&(topic.to_owned(), partition));
        self.notify();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiting_ends_when_the_position_is_passed_or_the_time_is_up() {
        let progress = ConsumerProgress::default();
        progress.assign("orders", 1, 5);
        let position = Position { topic: "orders".into(), partition: 1, offset: 7 };
        assert!(!progress.wait_for(&position, Duration::from_millis(20)).await);
        let waiter = {
            let progress = progress.clone();
            let position = position.clone();
            tokio::spawn(async move { progress.wait_for(&position, Duration::from_secs(10)).await })
        };
        progress.advance("orders", 1, 7);
        progress.advance("orders", 1, 8);
        assert!(waiter.await.unwrap());
        progress.advance("orders", 1, 3);
        assert_eq!(progress.next_offset("orders", 1), Some(8), "never goes back");
        progress.revoke("orders", 1);
        assert!(progress.assigned().is_empty());
    }
}
