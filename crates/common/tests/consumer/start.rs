//! Where a new group starts: `latest` (recorded at once, so a restart before the first event
//! still starts there) and a date-time (the first record at or after it).

use std::time::Duration;

use chrono::{TimeZone, Utc};
use eventline_common::kafka::consumer::{Batch, ConsumerMetrics, Handler, HandlerError, StartPosition};
use eventline_testkit::eventually;

use crate::support::{settings, shared, Env, Running, Shared, WAIT};

struct Offsets {
    seen: Shared<Vec<i64>>,
}

impl Handler for Offsets {
    async fn handle(&self, batch: &Batch) -> Result<(), HandlerError> {
        self.seen.lock().unwrap().extend(batch.iter().map(|e| e.offset));
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_group_at_latest_sees_only_events_published_after_it_started() {
    let env = Env::start().await;
    let topic = env.topic(1).await;
    for i in 0..3 {
        env.order(&topic, 0, &format!("old-{i}")).await;
    }
    let mut settings = settings(&[&topic]);
    settings.start = StartPosition::Latest;
    let metrics = ConsumerMetrics::registered_in(&prometheus::Registry::new()).unwrap();
    let seen = shared::<Vec<i64>>();

    // Starts, takes its partition, stops before any new event.
    let runtime = env.runtime(settings.clone(), Offsets { seen: seen.clone() }, &metrics);
    let progress = runtime.progress();
    let running = Running::start(runtime);
    eventually("the partition assigned", WAIT, || async { progress.next_offset(&topic, 0) }).await;
    running.stop().await;

    // Published while the group is down: still after its start, so it is seen.
    assert_eq!(env.order(&topic, 0, "new-0").await, 3);
    let runtime = env.runtime(settings, Offsets { seen: seen.clone() }, &metrics);
    let progress = runtime.progress();
    let running = Running::start(runtime);
    eventually("the partition assigned again", WAIT, || async { progress.next_offset(&topic, 0) }).await;
    assert_eq!(env.order(&topic, 0, "new-1").await, 4);
    eventually("both new events seen", WAIT, || async { (seen.lock().unwrap().len() >= 2).then_some(()) }).await;
    running.stop().await;
    assert_eq!(*seen.lock().unwrap(), [3, 4], "old events are never seen");
}

/// Also on a current-thread runtime: the consumer thread waits on the runtime, never blocks it.
#[tokio::test]
async fn a_new_group_at_a_date_time_sees_exactly_the_events_at_or_after_it() {
    let env = Env::start().await;
    let topic = env.topic(1).await;
    let base = Utc::now().timestamp_millis() - 3_600_000;
    for i in 0..6 {
        env.order_with(&topic, 0, &format!("order-{i}"), None, Some(base + i * 1000)).await;
    }
    let mut settings = settings(&[&topic]);
    let at = Utc.timestamp_millis_opt(base + 3000).single().unwrap();
    settings.start = StartPosition::At(at);
    let seen = shared::<Vec<i64>>();
    let running = Running::start(env.runtime(
        settings,
        Offsets { seen: seen.clone() },
        &ConsumerMetrics::registered_in(&prometheus::Registry::new()).unwrap(),
    ));
    eventually("three events seen", WAIT, || async { (seen.lock().unwrap().len() >= 3).then_some(()) }).await;
    running.stop_within(Duration::from_secs(10)).await;
    // One partition, in order: an earlier event would have come first.
    assert_eq!(*seen.lock().unwrap(), [3, 4, 5]);
}
