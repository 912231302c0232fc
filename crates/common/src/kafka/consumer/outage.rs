//! Waiting out an unavailable dependency ([`HandlerError::Unavailable`]): which partitions of a
//! consumer are paused and since when, the consumer's gate, and what that means for readiness.
//!
//! The executor of a partition that hears "unavailable" holds a [`Pause`] until the handler
//! answers anything else: it is logged and counted (the [`PAUSED_PARTITIONS`] gauge) when it
//! starts, changes dependency or scope, outlasts `ready_after` and ends — once each, not per
//! call — and it ends however the partition's work ends (resumed, revoked, stopped), because
//! it is dropped.
//!
//! The gate serves [`PauseScope::Consumer`]: the first partition to hear "unavailable for the
//! consumer" closes it and becomes its probe; every other partition waits at the gate before
//! its next handler call (also counted as paused) until the probe hears anything else, or
//! stops, and opens it.
//!
//! [`HandlerError::Unavailable`]: super::HandlerError::Unavailable
//! [`PAUSED_PARTITIONS`]: super::metrics::PAUSED_PARTITIONS

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prometheus::IntGauge;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::config::OutagePolicy;
use super::handler::PauseScope;
use super::retry::Stopped;

/// An outage a consumer is waiting out now ([`ConsumerProgress::outage`]).
///
/// [`ConsumerProgress::outage`]: super::ConsumerProgress::outage
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outage {
    /// The name the handler gave the dependency.
    pub dependency: String,
    /// Whether one partition or the whole consumer waits.
    pub scope: PauseScope,
    /// Since the first "unavailable" answer of this outage.
    pub paused_for: Duration,
}

/// The pauses and the gate of one consumer.
pub(crate) struct Outages {
    state: Mutex<State>,
    /// Bumped whenever the gate opens or closes.
    gate_changed: watch::Sender<u64>,
    ready_after: Duration,
}

#[derive(Default)]
struct State {
    next_id: u64,
    /// Pause id → what it waits for.
    paused: BTreeMap<u64, Waiting>,
    gate: Option<Closed>,
}

#[derive(Clone)]
struct Waiting {
    dependency: String,
    scope: PauseScope,
    since: Instant,
}

/// The gate is closed by the pause `owner` (the probe).
struct Closed {
    owner: u64,
    waiting: Waiting,
}

impl Default for Outages {
    fn default() -> Self {
        Self::new(OutagePolicy::default().ready_after)
    }
}

impl Outages {
    pub(crate) fn new(ready_after: Duration) -> Self {
        Self { state: Mutex::default(), gate_changed: watch::Sender::new(0), ready_after }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The longest outage going on now, if any.
    pub(crate) fn current(&self) -> Option<Outage> {
        let state = self.state();
        let gate = state.gate.as_ref().map(|closed| &closed.waiting);
        state.paused.values().chain(gate).min_by_key(|waiting| waiting.since).map(|waiting| Outage {
            dependency: waiting.dependency.clone(),
            scope: waiting.scope,
            paused_for: waiting.since.elapsed(),
        })
    }

    /// `false` while an outage has lasted longer than `ready_after`.
    pub(crate) fn is_ready(&self) -> bool {
        self.current().is_none_or(|outage| outage.paused_for <= self.ready_after)
    }

    /// Whether the gate is closed by a pause other than `me`: then a handler call must wait.
    fn closed_for(&self, me: Option<u64>) -> Option<String> {
        self.state().gate.as_ref().filter(|closed| Some(closed.owner) != me).map(|c| c.waiting.dependency.clone())
    }

    fn bump(&self) {
        self.gate_changed.send_modify(|version| *version = version.wrapping_add(1));
    }

    /// Waits until the gate is open for `me` (open, or closed by `me`); `Stopped` when `stop`
    /// fires first. While it waits, the partition counts as paused on `site` (once: a partition
    /// with a pause of its own is counted already).
    pub(crate) async fn pass_gate(
        &self,
        me: Option<&Pause<'_>>,
        site: Site<'_>,
        stop: &CancellationToken,
    ) -> Result<(), Stopped> {
        let me = me.map(|pause| pause.id);
        let mut changes = self.gate_changed.subscribe();
        let Some(dependency) = self.closed_for(me) else {
            return Ok(());
        };
        let _counted = me.is_none().then(|| {
            site.paused.inc();
            Uncount(site.paused)
        });
        tracing::debug!(
            group = site.group,
            topic = site.topic,
            partition = site.partition,
            dependency,
            "waiting for the consumer's probe of an unavailable dependency"
        );
        while self.closed_for(me).is_some() {
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return Err(Stopped) },
                () = stop.cancelled() => return Err(Stopped),
            }
        }
        Ok(())
    }
}

/// Decrements a gauge when dropped.
struct Uncount<'a>(&'a IntGauge);

impl Drop for Uncount<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Where a pause happens, for its log lines and its gauge.
#[derive(Clone, Copy)]
pub(crate) struct Site<'a> {
    pub group: &'a str,
    pub topic: &'a str,
    pub partition: i32,
    pub paused: &'a IntGauge,
}

/// One partition waiting out an unavailable dependency: from the first "unavailable" answer
/// until it is dropped (after the next other answer, or when the partition stops).
pub(crate) struct Pause<'a> {
    outages: &'a Outages,
    site: Site<'a>,
    id: u64,
    waiting: Waiting,
    /// "Unavailable" answers in a row: what the backoff grows with.
    calls: u32,
    owns_gate: bool,
    said_not_ready: bool,
    resumed: bool,
}

impl<'a> Pause<'a> {
    /// Starts a pause after the first "unavailable" answer.
    pub(crate) fn start(
        outages: &'a Outages,
        site: Site<'a>,
        dependency: &str,
        scope: PauseScope,
        error: &anyhow::Error,
    ) -> Self {
        let waiting = Waiting { dependency: dependency.to_owned(), scope, since: Instant::now() };
        let id = {
            let mut state = outages.state();
            state.next_id += 1;
            let id = state.next_id;
            state.paused.insert(id, waiting.clone());
            id
        };
        site.paused.inc();
        let mut pause =
            Self { outages, site, id, waiting, calls: 0, owns_gate: false, said_not_ready: false, resumed: false };
        pause.unavailable(dependency, scope, error, true);
        pause
    }

    /// Another "unavailable" answer (the first one, from [`start`](Self::start), with `new`);
    /// returns the number of such answers in a row, for the backoff.
    pub(crate) fn unavailable(&mut self, dependency: &str, scope: PauseScope, error: &anyhow::Error, new: bool) -> u32 {
        self.calls += 1;
        let changed = self.waiting.dependency != dependency || self.waiting.scope != scope;
        if changed {
            self.waiting.dependency = dependency.to_owned();
            self.waiting.scope = scope;
            if let Some(entry) = self.outages.state().paused.get_mut(&self.id) {
                entry.dependency = dependency.to_owned();
                entry.scope = scope;
            }
        }
        let probing = match scope {
            PauseScope::Consumer => self.close_gate(),
            PauseScope::Partition => {
                self.open_gate();
                false
            }
        };
        let Site { group, topic, partition, .. } = self.site;
        if new || changed {
            let pauses = match (scope, probing) {
                (PauseScope::Consumer, true) => "consumer paused; this partition probes",
                (PauseScope::Consumer, false) => "partition waits for the consumer's probe",
                (PauseScope::Partition, _) => "partition paused",
            };
            tracing::warn!(
                group, topic, partition, dependency, scope = scope.as_str(), error = %format!("{error:#}"),
                "dependency unavailable; {pauses} (no retries spent, nothing dead-lettered)"
            );
        } else {
            tracing::debug!(group, topic, partition, dependency, calls = self.calls, error = %format!("{error:#}"), "dependency still unavailable");
        }
        let paused_for = self.waiting.since.elapsed();
        if !self.said_not_ready && paused_for > self.outages.ready_after {
            self.said_not_ready = true;
            tracing::warn!(
                group, topic, partition, dependency, paused_for = ?paused_for, ready_after = ?self.outages.ready_after,
                "dependency still unavailable; the consumer reports not ready"
            );
        }
        self.calls
    }

    /// Closes the consumer's gate unless another pause did; `true` when this one probes.
    fn close_gate(&mut self) -> bool {
        if self.owns_gate {
            return true;
        }
        {
            let mut state = self.outages.state();
            if state.gate.is_some() {
                return false;
            }
            state.gate = Some(Closed { owner: self.id, waiting: self.waiting.clone() });
        }
        self.owns_gate = true;
        self.outages.bump();
        true
    }

    fn open_gate(&mut self) {
        if !self.owns_gate {
            return;
        }
        self.owns_gate = false;
        {
            let mut state = self.outages.state();
            if state.gate.as_ref().is_some_and(|closed| closed.owner == self.id) {
                state.gate = None;
            }
        }
        self.outages.bump();
    }

    /// "Unavailable" answers in a row so far.
    pub(crate) fn calls(&self) -> u32 {
        self.calls
    }

    /// The handler answered something other than "unavailable": the dependency is back.
    pub(crate) fn resume(mut self) {
        self.resumed = true;
    }
}

impl Drop for Pause<'_> {
    fn drop(&mut self) {
        let probed = self.owns_gate;
        self.open_gate();
        self.outages.state().paused.remove(&self.id);
        self.site.paused.dec();
        let Site { group, topic, partition, .. } = self.site;
        let (dependency, paused_for) = (&self.waiting.dependency, self.waiting.since.elapsed());
        match (self.resumed, probed) {
            (true, true) => {
                tracing::info!(group, topic, partition, dependency, paused_for = ?paused_for, calls = self.calls, "dependency available again; consumer resumed")
            }
            (true, false) => {
                tracing::info!(group, topic, partition, dependency, paused_for = ?paused_for, calls = self.calls, "dependency available again; partition resumed")
            }
            (false, _) => {
                tracing::debug!(group, topic, partition, dependency, paused_for = ?paused_for, "partition stopped while its dependency was unavailable")
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn site(gauge: &IntGauge, partition: i32) -> Site<'_> {
        Site { group: "g", topic: "orders", partition, paused: gauge }
    }

    fn down() -> anyhow::Error {
        anyhow::anyhow!("connection refused")
    }

    #[test]
    fn a_pause_is_reported_until_it_is_dropped_and_readiness_follows_ready_after() {
        let outages = Outages::new(Duration::from_secs(3600));
        let gauge = IntGauge::new("paused", "paused").unwrap();
        assert_eq!(outages.current(), None);
        let pause = Pause::start(&outages, site(&gauge, 0), "postgres", PauseScope::Partition, &down());
        let outage = outages.current().unwrap();
        assert_eq!((outage.dependency.as_str(), outage.scope), ("postgres", PauseScope::Partition));
        assert_eq!(gauge.get(), 1);
        assert!(outages.is_ready(), "not paused longer than ready_after yet");
        pause.resume();
        assert_eq!(outages.current(), None);
        assert_eq!(gauge.get(), 0);

        let impatient = Outages::new(Duration::from_nanos(1));
        let pause = Pause::start(&impatient, site(&gauge, 0), "postgres", PauseScope::Partition, &down());
        std::thread::sleep(Duration::from_millis(2)); // past 1 ns, whatever the clock's resolution
        assert!(!impatient.is_ready());
        drop(pause); // stopped rather than resumed: the pause ends all the same
        assert!(impatient.is_ready());
    }

    #[tokio::test]
    async fn the_first_consumer_wide_pause_closes_the_gate_for_the_others_until_it_ends() {
        let outages = Outages::default();
        let gauge = IntGauge::new("paused", "paused").unwrap();
        let stop = CancellationToken::new();
        outages.pass_gate(None, site(&gauge, 1), &stop).await.unwrap();

        let mut probe = Pause::start(&outages, site(&gauge, 0), "postgres", PauseScope::Consumer, &down());
        assert_eq!(outages.current().unwrap().scope, PauseScope::Consumer);
        outages.pass_gate(Some(&probe), site(&gauge, 0), &stop).await.expect("the probe passes its own gate");
        let other = Pause::start(&outages, site(&gauge, 1), "postgres", PauseScope::Consumer, &down());
        assert!(outages.closed_for(Some(other.id)).is_some(), "a second pause does not take the gate over");

        {
            let waiting = outages.pass_gate(Some(&other), site(&gauge, 1), &stop);
            tokio::pin!(waiting);
            assert!(futures::poll!(waiting.as_mut()).is_pending());
            assert_eq!(gauge.get(), 2, "two partitions paused, one of them at the gate");
            assert_eq!(probe.unavailable("postgres", PauseScope::Consumer, &down(), false), 2);
            assert!(futures::poll!(waiting.as_mut()).is_pending());
            probe.unavailable("postgres", PauseScope::Partition, &down(), false);
            waiting.await.expect("a pause of the probe's partition alone opens the gate");
        }
        probe.unavailable("postgres", PauseScope::Consumer, &down(), false);
        {
            let waiting = outages.pass_gate(None, site(&gauge, 2), &stop);
            tokio::pin!(waiting);
            assert!(futures::poll!(waiting.as_mut()).is_pending(), "closed again");
            probe.resume();
            waiting.await.expect("the probe's success opens the gate");
        }
        drop(other);
        assert_eq!(gauge.get(), 0);
        assert_eq!(outages.current(), None);
    }

    #[tokio::test]
    async fn a_probe_that_stops_opens_the_gate_and_a_waiter_stops_with_its_partition() {
        let outages = Outages::default();
        let gauge = IntGauge::new("paused", "paused").unwrap();
        let probe = Pause::start(&outages, site(&gauge, 0), "postgres", PauseScope::Consumer, &down());
        let stop = CancellationToken::new();
        let waiting = outages.pass_gate(None, site(&gauge, 1), &stop);
        tokio::pin!(waiting);
        assert!(futures::poll!(waiting.as_mut()).is_pending());
        assert_eq!(gauge.get(), 2, "the probe's partition and the one at the gate");
        stop.cancel();
        assert_eq!(waiting.await, Err(Stopped));

        drop(probe); // revoked while probing
        outages.pass_gate(None, site(&gauge, 1), &CancellationToken::new()).await.unwrap();
        assert_eq!(gauge.get(), 0);
    }
}
