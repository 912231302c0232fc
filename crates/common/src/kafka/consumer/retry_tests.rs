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

    fn applied(&mut self, next_offset: i64, count: usize) {
        self.applied.push((next_offset, count));
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

async fn run(
    handler: &Scripted,
    policy: &RetryPolicy,
    offsets: &[i64],
    end: i64,
) -> (Result<(), Stopped>, Recorded, GroupMetrics) {
    let metrics = ConsumerMetrics::new().unwrap().for_group("g");
    let stop = CancellationToken::new();
    let group: Arc<str> = Arc::from("g");
    let executor =
        Executor { handler, policy, metrics: &metrics, stop: &stop, group: &group, topic: "orders", partition: 0 };
    let mut recorded = Recorded::default();
    let result = executor.run(events(offsets), end, &mut recorded).await;
    (result, recorded, metrics)
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
    let metrics = ConsumerMetrics::new().unwrap().for_group("g");
    let stop = CancellationToken::new();
    let group: Arc<str> = Arc::from("g");
    let slow = RetryPolicy {
        max_attempts: 10,
        initial_backoff: Duration::from_secs(60),
        max_backoff: Duration::from_secs(60),
        jitter: 0.0,
    };
    let executor = Executor {
        handler: &handler,
        policy: &slow,
        metrics: &metrics,
        stop: &stop,
        group: &group,
        topic: "orders",
        partition: 0,
    };
    let mut recorded = Recorded::default();
    stop.cancel();
    let started = std::time::Instant::now();
    let result = executor.run(events(&[1]), 2, &mut recorded).await;
    assert_eq!(result, Err(Stopped));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(recorded.applied.is_empty() && recorded.dead.is_empty());
}
