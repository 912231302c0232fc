//! The executor with a scripted handler and in-memory effects: no broker, no database.

use std::sync::Mutex;
use std::time::Duration;

use super::*;
use crate::kafka::consumer::handler::tests::delivered;
use crate::kafka::consumer::metrics::ConsumerMetrics;

type Script = dyn Fn(&[i64], u32) -> Result<(), HandlerError> + Send + Sync;

/// Answers each call with `script(offsets in the batch, number of this call)`; records calls.
struct Scripted {
    script: Box<Script>,
    calls: Mutex<Vec<Vec<i64>>>,
}

impl Scripted {
    fn new(script: impl Fn(&[i64], u32) -> Result<(), HandlerError> + Send + Sync + 'static) -> Self {
        Self { script: Box::new(script), calls: Mutex::default() }
    }

    fn calls(&self) -> Vec<Vec<i64>> {
        self.calls.lock().unwrap().clone()
    }
}

impl Handler for Scripted {
    async fn handle(&self, batch: &Batch) -> Result<(), HandlerError> {
        let offsets: Vec<i64> = batch.iter().map(|e| e.offset).collect();
        let call = {
            let mut calls = self.calls.lock().unwrap();
            calls.push(offsets.clone());
            calls.len() as u32
        };
        (self.script)(&offsets, call)
    }
}

#[derive(Default)]
struct Recorded {
    dead: Vec<(i64, DeadLetterReason, u32)>,
    applied: Vec<(i64, usize)>,
    blocked: Vec<(i64, DeadLetterReason, u32)>,
    parked: Vec<Vec<i64>>,
}

impl Effects for Recorded {
    async fn dead_letter(
        &mut self,
        event: &Delivered,
        reason: DeadLetterReason,
        _error: String,
        attempts: u32,
    ) -> Result<(), Stopped> {
        self.dead.push((event.offset, reason, attempts));
        Ok(())
    }

    fn applied(&mut self, next_offset: i64, events: &[Delivered]) {
        self.applied.push((next_offset, events.len()));
    }

    async fn block(
        &mut self,
        event: &Delivered,
        reason: DeadLetterReason,
        _error: String,
        attempts: u32,
    ) -> Result<(), Stopped> {
        self.blocked.push((event.offset, reason, attempts));
        Ok(())
    }

    async fn park(&mut self, events: Vec<Delivered>) -> Result<(), Stopped> {
        self.parked.push(events.iter().map(|e| e.offset).collect());
        Ok(())
    }
}

fn events(offsets: &[i64]) -> Vec<Delivered> {
    offsets.iter().map(|o| delivered(*o, &format!("order-{o}"))).collect()
}

fn policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(2),
        jitter: 0.0,
    }
}

/// Waits of a millisecond or two while a dependency is unavailable.
fn quick_outages() -> OutagePolicy {
    OutagePolicy {
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(2),
        jitter: 0.0,
        ready_after: Duration::from_secs(60),
    }
}

/// What the executors of one consumer share.
struct Rig {
    metrics: GroupMetrics,
    stop: CancellationToken,
    group: Arc<str>,
    outage: OutagePolicy,
    outages: Outages,
}

impl Rig {
    fn new(outage: OutagePolicy) -> Self {
        Self {
            metrics: ConsumerMetrics::new().unwrap().for_group("g"),
            stop: CancellationToken::new(),
            group: Arc::from("g"),
            outages: Outages::new(outage.ready_after),
            outage,
        }
    }

    fn executor<'a>(
        &'a self,
        handler: &'a Scripted,
        policy: &'a RetryPolicy,
        partition: i32,
    ) -> Executor<'a, Scripted> {
        Executor {
            handler,
            policy,
            outage: &self.outage,
            outages: &self.outages,
            metrics: &self.metrics,
            stop: &self.stop,
            group: &self.group,
            topic: "orders",
            partition,
            keys: false,
        }
    }
}

async fn run(
    handler: &Scripted,
    policy: &RetryPolicy,
    offsets: &[i64],
    end: i64,
) -> (Result<(), Stopped>, Recorded, GroupMetrics) {
    let rig = Rig::new(quick_outages());
    let mut recorded = Recorded::default();
    let result = rig.executor(handler, policy, 0).run(events(offsets), end, &mut recorded).await;
    assert_eq!(rig.outages.current(), None, "no outage outlives the run");
    assert_eq!(rig.metrics.paused.get(), 0, "no partition left counted as paused");
    (result, recorded, rig.metrics)
}

fn boom() -> anyhow::Error {
    anyhow::anyhow!("boom")
}

#[tokio::test]
async fn a_good_batch_is_one_call_that_covers_the_whole_batch() {
    let handler = Scripted::new(|_, _| Ok(()));
    let (result, recorded, metrics) = run(&handler, &policy(3), &[1, 2, 4], 6).await;
    assert_eq!(result, Ok(()));
    assert_eq!(handler.calls(), [vec![1, 2, 4]]);
    assert_eq!(recorded.applied, [(6, 3)], "continues after the skipped offset 5");
    assert!(recorded.dead.is_empty());
    assert_eq!(metrics.handled.get(), 3);
}

#[tokio::test]
async fn a_named_permanent_failure_dead_letters_that_event_and_handles_the_rest_again() {
    let handler = Scripted::new(|offsets, _| match offsets.contains(&2) {
        true => Err(HandlerError::permanent_at(2, boom())),
        false => Ok(()),
    });
    let (result, recorded, _) = run(&handler, &policy(3), &[1, 2, 3], 4).await;
    assert_eq!(result, Ok(()));
    assert_eq!(handler.calls(), [vec![1, 2, 3], vec![1, 3]]);
    assert_eq!(recorded.dead, [(2, DeadLetterReason::Permanent, 1)]);
    assert_eq!(recorded.applied, [(4, 2)]);
}

#[tokio::test]
async fn an_unnamed_permanent_failure_is_isolated_one_by_one() {
    let handler = Scripted::new(|offsets, _| match offsets.contains(&2) {
        true => Err(HandlerError::permanent(boom())),
        false => Ok(()),
    });
    let (_, recorded, _) = run(&handler, &policy(3), &[1, 2, 3], 9).await;
    assert_eq!(handler.calls(), [vec![1, 2, 3], vec![1], vec![2], vec![3]]);
    assert_eq!(recorded.dead, [(2, DeadLetterReason::Permanent, 2)], "two calls included offset 2");
    assert_eq!(recorded.applied, [(2, 1), (9, 1)], "each single call continues at the next event");
}

#[tokio::test]
async fn a_retryable_failure_that_clears_is_applied_once_after_backoff() {
    let handler = Scripted::new(|_, call| match call {
        1 | 2 => Err(HandlerError::retryable(boom())),
        _ => Ok(()),
    });
    let (result, recorded, metrics) = run(&handler, &policy(5), &[10, 11], 12).await;
    assert_eq!(result, Ok(()));
    assert_eq!(handler.calls().len(), 3);
    assert_eq!(recorded.applied, [(12, 2)]);
    assert_eq!(metrics.retries.get(), 2);
}

#[tokio::test]
async fn a_retryable_failure_that_never_clears_ends_in_the_dead_letter_topic_with_its_attempts() {
    let handler = Scripted::new(|offsets, _| match offsets.contains(&2) {
        true => Err(HandlerError::retryable(boom())),
        false => Ok(()),
    });
    let (_, recorded, metrics) = run(&handler, &policy(2), &[1, 2, 3], 4).await;
    assert_eq!(handler.calls(), [vec![1, 2, 3], vec![1, 2, 3], vec![1], vec![2], vec![2], vec![3]]);
    assert_eq!(recorded.dead, [(2, DeadLetterReason::RetriesExhausted, 4)]);
    assert_eq!(recorded.applied, [(2, 1), (4, 1)]);
    assert_eq!(metrics.retries.get(), 2);

    let named = Scripted::new(|offsets, _| match offsets.contains(&2) {
        true => Err(HandlerError::retryable_at(2, boom())),
        false => Ok(()),
    });
    let (_, recorded, _) = run(&named, &policy(3), &[1, 2, 3], 4).await;
    assert_eq!(named.calls().len(), 4, "three tries, then the rest without offset 2");
    assert_eq!(recorded.dead, [(2, DeadLetterReason::RetriesExhausted, 3)]);
}

#[tokio::test]
async fn duplicates_are_dropped_and_the_rest_is_handled() {
    let handler = Scripted::new(|offsets, _| match offsets.contains(&5) {
        true => Err(HandlerError::duplicate_at(5)),
        false => Ok(()),
    });
    let (_, recorded, metrics) = run(&handler, &policy(3), &[5, 6], 7).await;
    assert_eq!(handler.calls(), [vec![5, 6], vec![6]]);
    assert_eq!(recorded.applied, [(7, 1)]);
    assert_eq!(metrics.duplicate.get(), 1);
    assert!(recorded.dead.is_empty());
}

#[tokio::test]
async fn stopping_during_backoff_leaves_the_batch_unapplied() {
    let handler = Scripted::new(|_, _| Err(HandlerError::retryable(boom())));
    let rig = Rig::new(quick_outages());
    let slow = RetryPolicy {
        max_attempts: 10,
        initial_backoff: Duration::from_secs(60),
        max_backoff: Duration::from_secs(60),
        jitter: 0.0,
    };
    let mut recorded = Recorded::default();
    rig.stop.cancel();
    let started = std::time::Instant::now();
    let result = rig.executor(&handler, &slow, 0).run(events(&[1]), 2, &mut recorded).await;
    assert_eq!(result, Err(Stopped));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(recorded.applied.is_empty() && recorded.dead.is_empty());
}

fn down() -> anyhow::Error {
    anyhow::anyhow!("connection refused")
}

#[tokio::test]
async fn an_unavailable_dependency_is_waited_out_without_spending_attempts_or_dead_lettering() {
    let handler = Scripted::new(|_, call| match call {
        1..=5 => Err(HandlerError::unavailable("postgres", down())),
        6 => Err(HandlerError::retryable(boom())),
        _ => Ok(()),
    });
    let (result, recorded, metrics) = run(&handler, &policy(2), &[10, 11], 12).await;
    assert_eq!(result, Ok(()));
    assert_eq!(handler.calls(), vec![vec![10, 11]; 7], "the same events each time, never split up");
    assert_eq!(recorded.applied, [(12, 2)], "applied once");
    assert!(recorded.dead.is_empty(), "five unavailable answers and a retry fit a budget of two attempts");
    assert_eq!(metrics.retries.get(), 1, "only the retryable failure counts as a retry");
    assert_eq!(metrics.handled.get(), 2);
}

#[tokio::test]
async fn after_an_outage_an_event_carries_only_the_attempts_that_were_made() {
    let handler = Scripted::new(|offsets, call| match call {
        1..=3 => Err(HandlerError::unavailable_consumer("postgres", down())),
        _ if offsets.contains(&2) => Err(HandlerError::permanent_at(2, boom())),
        _ => Ok(()),
    });
    let (result, recorded, _) = run(&handler, &policy(3), &[1, 2], 3).await;
    assert_eq!(result, Ok(()));
    assert_eq!(recorded.dead, [(2, DeadLetterReason::Permanent, 1)], "one attempt, not four calls");
    assert_eq!(recorded.applied, [(3, 1)]);
}

#[tokio::test]
async fn stopping_during_an_outage_leaves_the_batch_unapplied_and_ends_the_pause() {
    let rig = Rig::new(OutagePolicy {
        initial_backoff: Duration::from_secs(60),
        max_backoff: Duration::from_secs(60),
        ..quick_outages()
    });
    let stop = rig.stop.clone();
    let handler = Scripted::new(move |_, _| {
        stop.cancel(); // the consumer starts to drain while the handler finds its database gone
        Err(HandlerError::unavailable("postgres", down()))
    });
    let mut recorded = Recorded::default();
    let started = std::time::Instant::now();
    let result = rig.executor(&handler, &policy(3), 0).run(events(&[1]), 2, &mut recorded).await;
    assert_eq!(result, Err(Stopped));
    assert!(started.elapsed() < Duration::from_secs(5), "did not sit out the 60 s backoff");
    assert_eq!(handler.calls().len(), 1);
    assert!(recorded.applied.is_empty() && recorded.dead.is_empty());
    assert_eq!(rig.outages.current(), None);
    assert_eq!(rig.metrics.paused.get(), 0);
}

#[tokio::test]
async fn a_consumer_wide_outage_holds_other_partitions_until_the_probe_succeeds() {
    let rig = Rig::new(quick_outages());
    let log: Arc<Mutex<Vec<(i32, u32)>>> = Arc::default();
    let probe_log = log.clone();
    let probe = Scripted::new(move |_, call| {
        probe_log.lock().unwrap().push((0, call));
        match call {
            1..=3 => Err(HandlerError::unavailable_consumer("postgres", down())),
            _ => Ok(()),
        }
    });
    let other_log = log.clone();
    let other = Scripted::new(move |_, call| {
        other_log.lock().unwrap().push((1, call));
        Ok(())
    });
    let policy = policy(3);
    let (mut first, mut second) = (Recorded::default(), Recorded::default());
    // Polled in order: partition 0's first call closes the gate before partition 1 gets there.
    let (zero, one) = (rig.executor(&probe, &policy, 0), rig.executor(&other, &policy, 1));
    let (a, b) = tokio::join!(zero.run(events(&[1]), 2, &mut first), one.run(events(&[7]), 8, &mut second),);
    assert_eq!((a, b), (Ok(()), Ok(())));
    assert_eq!(*log.lock().unwrap(), [(0, 1), (0, 2), (0, 3), (0, 4), (1, 1)], "partition 1 waited for the probe");
    assert_eq!((first.applied, second.applied), (vec![(2, 1)], vec![(8, 1)]));
    assert_eq!(rig.outages.current(), None);
    assert_eq!(rig.metrics.paused.get(), 0);
}

#[tokio::test]
async fn a_partition_outage_does_not_hold_other_partitions() {
    let rig = Rig::new(OutagePolicy {
        initial_backoff: Duration::from_secs(60),
        max_backoff: Duration::from_secs(60),
        ..quick_outages()
    });
    let paused = Scripted::new(|_, _| Err(HandlerError::unavailable("pricing-api", down())));
    let other = Scripted::new(|_, _| Ok(()));
    let policy = policy(3);
    let (mut first, mut second) = (Recorded::default(), Recorded::default());
    let zero = rig.executor(&paused, &policy, 0);
    {
        let waiting = zero.run(events(&[1]), 2, &mut first);
        tokio::pin!(waiting);
        assert!(futures::poll!(waiting.as_mut()).is_pending());
        assert_eq!(rig.metrics.paused.get(), 1);
        let outage = rig.outages.current().unwrap();
        assert_eq!((outage.dependency.as_str(), outage.scope), ("pricing-api", PauseScope::Partition));
        rig.executor(&other, &policy, 1).run(events(&[7]), 8, &mut second).await.unwrap();
        assert_eq!(second.applied, [(8, 1)], "partition 1 went on while partition 0 waited");
        rig.stop.cancel();
        assert_eq!(waiting.await, Err(Stopped));
    }
    assert!(first.applied.is_empty() && first.dead.is_empty());
}

/// Events at `offsets` with the keys `keys` (one each).
fn keyed(offsets: &[i64], keys: &[&str]) -> Vec<Delivered> {
    offsets.iter().zip(keys).map(|(o, key)| delivered(*o, key)).collect()
}

async fn run_keyed(handler: &Scripted, offsets: &[i64], keys: &[&str], end: i64) -> Recorded {
    let rig = Rig::new(quick_outages());
    let policy = policy(2);
    let mut executor = rig.executor(handler, &policy, 0);
    executor.keys = true;
    let mut recorded = Recorded::default();
    executor.run(keyed(offsets, keys), end, &mut recorded).await.unwrap();
    recorded
}

#[tokio::test]
async fn with_keys_a_permanent_failure_blocks_its_key_and_parks_its_later_events_only() {
    let handler = Scripted::new(|offsets, _| match offsets.contains(&1) {
        true => Err(HandlerError::permanent_at(1, boom())),
        false => Ok(()),
    });
    let recorded = run_keyed(&handler, &[1, 2, 3, 4, 5], &["k1", "k2", "k1", "k2", "k1"], 6).await;
    assert_eq!(handler.calls(), [vec![1, 2, 3, 4, 5], vec![2, 4]], "k1's later events never reach the handler");
    assert_eq!(recorded.blocked, [(1, DeadLetterReason::Permanent, 1)]);
    assert!(recorded.dead.is_empty(), "blocking decides about the dead letter");
    assert_eq!(recorded.parked, [vec![3, 5]]);
    assert_eq!(recorded.applied, [(6, 2)]);
}

#[tokio::test]
async fn with_keys_an_exhausted_event_blocks_after_its_in_line_budget_and_earlier_events_of_its_key_go_on() {
    let handler = Scripted::new(|offsets, _| match offsets.contains(&2) {
        true => Err(HandlerError::retryable(boom())),
        false => Ok(()),
    });
    let recorded = run_keyed(&handler, &[1, 2, 3, 4], &["k1", "k1", "k2", "k1"], 5).await;
    assert_eq!(
        handler.calls(),
        [vec![1, 2, 3, 4], vec![1, 2, 3, 4], vec![1], vec![2], vec![2], vec![3]],
        "one by one after the batch's budget; k1's event 4 is parked, not tried"
    );
    assert_eq!(recorded.blocked, [(2, DeadLetterReason::RetriesExhausted, 4)]);
    assert_eq!(recorded.parked, [vec![4]]);
    assert_eq!(recorded.applied, [(2, 1), (5, 1)]);
}

#[tokio::test]
async fn with_keys_an_event_without_a_key_is_dead_lettered_as_before() {
    let handler = Scripted::new(|offsets, _| match offsets.contains(&1) {
        true => Err(HandlerError::permanent_at(1, boom())),
        false => Ok(()),
    });
    let rig = Rig::new(quick_outages());
    let policy = policy(2);
    let mut executor = rig.executor(&handler, &policy, 0);
    executor.keys = true;
    let mut events = keyed(&[1, 2], &["k1", "k1"]);
    events[0].key = None;
    let mut recorded = Recorded::default();
    executor.run(events, 3, &mut recorded).await.unwrap();
    assert_eq!(recorded.dead, [(1, DeadLetterReason::Permanent, 1)]);
    assert!(recorded.blocked.is_empty() && recorded.parked.is_empty());
    assert_eq!(recorded.applied, [(3, 1)]);
}
