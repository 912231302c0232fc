//! Cancelling the token drains: the in-flight batch finishes and is committed, no new batch
//! starts, and `run` returns within the deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use eventline_common::kafka::consumer::{group_lag, Batch, ConsumerMetrics, Handler, HandlerError, OffsetSource};
use tokio::sync::Notify;

use crate::support::{settings, shared, Env, Running, Shared};

/// Holds its first call until released.
struct Gate {
    entered: Arc<Notify>,
    release: Arc<Notify>,
    calls: Shared<Vec<Vec<i64>>>,
    done: Shared<Vec<i64>>,
}

impl Handler for Gate {
    async fn handle(&self, batch: &Batch) -> Result<(), HandlerError> {
        let offsets: Vec<i64> = batch.iter().map(|e| e.offset).collect();
        let first = {
            let mut calls = self.calls.lock().unwrap();
            calls.push(offsets.clone());
            calls.len() == 1
        };
        if first {
            self.entered.notify_one();
            let released = tokio::time::timeout(Duration::from_secs(20), self.release.notified()).await;
            assert!(released.is_ok(), "never released");
        }
        self.done.lock().unwrap().extend(offsets);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_finishes_and_commits_the_in_flight_batch_then_returns_within_the_deadline() {
    let env = Env::start().await;
    let topic = env.topic(1).await;
    for i in 0..6 {
        env.order(&topic, 0, &format!("order-{i}")).await;
    }
    let mut settings = settings(&[&topic]);
    settings.batch_max_size = 2;
    let group = settings.group_id.clone();
    let (entered, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let calls = shared::<Vec<Vec<i64>>>();
    let done = shared::<Vec<i64>>();
    let gate = Gate { entered: entered.clone(), release: release.clone(), calls: calls.clone(), done: done.clone() };
    let running = Running::start(env.runtime(
        settings,
        gate,
        &ConsumerMetrics::registered_in(&prometheus::Registry::new()).unwrap(),
    ));
    tokio::time::timeout(Duration::from_secs(30), entered.notified()).await.expect("a batch in flight");

    running.token.cancel();
    release.notify_one();
    let started = Instant::now();
    running.stop_within(Duration::from_secs(10)).await;
    assert!(started.elapsed() < Duration::from_secs(10));

    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1, "no batch started after the cancel: {calls:?}");
    let in_flight = calls[0].clone();
    assert_eq!(*done.lock().unwrap(), in_flight, "the in-flight batch finished");
    let next = in_flight.last().unwrap() + 1;
    let lag = group_lag(&env.kafka(), &group, &[topic], OffsetSource::Kafka).await.unwrap();
    assert_eq!((lag[0].committed, lag[0].end, lag[0].lag), (Some(next), 6, 6 - next), "committed on the way out");
}
