//! Two instances of one group: partitions move when one joins and when one leaves; every event
//! is handled exactly once (revoke waits for the in-flight batch and commits first).

use std::collections::BTreeSet;
use std::time::Duration;

use eventline_common::kafka::consumer::{Batch, ConsumerMetrics, Handler, HandlerError};
use eventline_testkit::eventually;

use crate::support::{settings, shared, Env, Running, Shared, WAIT};

struct Tagged {
    instance: &'static str,
    seen: Shared<Vec<(&'static str, i32, i64)>>,
}

impl Handler for Tagged {
    async fn handle(&self, batch: &Batch) -> Result<(), HandlerError> {
        tokio::time::sleep(Duration::from_millis(10)).await; // some work, so revokes meet batches in flight
        self.seen.lock().unwrap().extend(batch.iter().map(|e| (self.instance, e.partition, e.offset)));
        Ok(())
    }
}

async fn produce(env: &Env, topic: &str, per_partition: usize) {
    for i in 0..per_partition {
        for partition in 0..4 {
            env.order(topic, partition, &format!("order-{partition}-{i}")).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partitions_move_between_instances_without_losing_or_repeating_events() {
    let env = Env::start().await;
    let topic = env.topic(4).await;
    produce(&env, &topic, 5).await;
    let mut settings = settings(&[&topic]);
    settings.batch_max_size = 2;
    let metrics = ConsumerMetrics::registered_in(&prometheus::Registry::new()).unwrap();
    let seen = shared::<Vec<(&'static str, i32, i64)>>();
    let count = |expected: usize| {
        let seen = seen.clone();
        move || {
            let seen = seen.clone();
            async move { (seen.lock().unwrap().len() >= expected).then_some(()) }
        }
    };

    let a = Running::start(env.runtime(settings.clone(), Tagged { instance: "a", seen: seen.clone() }, &metrics));
    eventually("a started handling", WAIT, count(4)).await;
    let b_runtime = env.runtime(settings.clone(), Tagged { instance: "b", seen: seen.clone() }, &metrics);
    let b_progress = b_runtime.progress();
    let b = Running::start(b_runtime);
    eventually("b owns partitions", WAIT, || async { (!b_progress.assigned().is_empty()).then_some(()) }).await;
    produce(&env, &topic, 5).await;
    eventually("the second wave handled", WAIT, count(40)).await;

    b.stop().await;
    produce(&env, &topic, 1).await;
    eventually("a took everything back", WAIT, count(44)).await;
    a.stop().await;

    let seen = seen.lock().unwrap().clone();
    let distinct: BTreeSet<(i32, i64)> = seen.iter().map(|(_, p, o)| (*p, *o)).collect();
    let expected: BTreeSet<(i32, i64)> = (0..4).flat_map(|p| (0..11).map(move |o| (p, o))).collect();
    assert_eq!(distinct, expected, "nothing lost");
    assert_eq!(seen.len(), expected.len(), "nothing handled twice");
    assert!(seen.iter().any(|(i, _, _)| *i == "b"), "b handled some events");
    let late: Vec<_> = seen[40..].iter().map(|(i, _, _)| *i).collect();
    assert!(late.iter().all(|i| *i == "a"), "after b left, a handled the rest: {late:?}");
}
