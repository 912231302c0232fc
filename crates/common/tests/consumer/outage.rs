//! A handler whose dependency is down says so, and the runtime pauses rather than retries:
//! nothing is dead-lettered, order is kept, the other partition flows (or, for a consumer-wide
//! outage, waits too), readiness turns false after `ready_after` and back once it is over.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use eventline_common::events::OrderPlaced;
use eventline_common::kafka::consumer::metrics::{DEAD_LETTERED_TOTAL, PAUSED_PARTITIONS, RETRIES_TOTAL};
use eventline_common::kafka::consumer::{
    Batch, ConsumerMetrics, ConsumerSettings, Handler, HandlerError, OutagePolicy, PauseScope,
};
use eventline_testkit::eventually;

use crate::support::{end_offset, metric, settings, shared, Env, Running, Shared, WAIT};

const DEPENDENCY: &str = "pricing-api";

/// Applies every event, except that batches of partition 0 find the dependency down while
/// `down` is set.
struct Flaky {
    down: Arc<AtomicBool>,
    scope: PauseScope,
    unavailable: Arc<AtomicU32>,
    applied: Shared<Vec<(i32, i64, String)>>,
}

impl Handler for Flaky {
    async fn handle(&self, batch: &Batch) -> Result<(), HandlerError> {
        if batch.partition() == 0 && self.down.load(Ordering::SeqCst) {
            self.unavailable.fetch_add(1, Ordering::SeqCst);
            let error = anyhow::anyhow!("connection refused");
            return Err(HandlerError::Unavailable { dependency: DEPENDENCY.into(), scope: self.scope, source: error });
        }
        let mut orders = Vec::new();
        for event in batch {
            let order: OrderPlaced = event.event()?;
            orders.push((event.partition, event.offset, order.order_id));
        }
        self.applied.lock().unwrap().extend(orders);
        Ok(())
    }
}

struct Rig {
    down: Arc<AtomicBool>,
    unavailable: Arc<AtomicU32>,
    applied: Shared<Vec<(i32, i64, String)>>,
    registry: prometheus::Registry,
    group: String,
    dead_letter_topic: String,
}

impl Rig {
    fn applied(&self) -> Vec<(i32, i64, String)> {
        self.applied.lock().unwrap().clone()
    }

    fn of(&self, partition: i32) -> Vec<String> {
        self.applied().into_iter().filter(|(p, _, _)| *p == partition).map(|(_, _, id)| id).collect()
    }

    fn paused(&self) -> f64 {
        metric(&self.registry, PAUSED_PARTITIONS, &[("group", &self.group)])
    }

    /// Waits until `partition` has applied `count` events.
    async fn until_applied(&self, partition: i32, count: usize) {
        eventually(&format!("{count} events of partition {partition} applied"), WAIT, || async {
            (self.of(partition).len() >= count).then_some(())
        })
        .await;
    }

    /// Nothing went to the dead-letter topic and no retry was counted.
    async fn assert_nothing_spent(&self, env: &Env) {
        let group = [("group", self.group.as_str())];
        assert_eq!(metric(&self.registry, DEAD_LETTERED_TOTAL, &group), 0.0);
        assert_eq!(metric(&self.registry, RETRIES_TOTAL, &group), 0.0);
        assert_eq!(end_offset(&env.kafka(), &self.dead_letter_topic, 0).await, 0, "dead-letter topic empty");
    }
}

/// Quick outage backoff and readiness; one attempt only, so any attempt an outage spent would
/// dead-letter its events.
fn outage_settings(topic: &str) -> ConsumerSettings {
    let mut settings = settings(&[topic]);
    settings.retry.max_attempts = 1;
    settings.outage = OutagePolicy {
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        jitter: 0.2,
        ready_after: Duration::from_millis(300),
    };
    settings
}

fn start(env: &Env, settings: ConsumerSettings, scope: PauseScope) -> (Rig, Running, impl Fn() -> ReadyState) {
    let registry = prometheus::Registry::new();
    let metrics = ConsumerMetrics::registered_in(&registry).unwrap();
    let rig = Rig {
        down: Arc::new(AtomicBool::new(true)),
        unavailable: Arc::default(),
        applied: shared(),
        registry,
        group: settings.group_id.clone(),
        dead_letter_topic: settings.dead_letter_topic(),
    };
    let handler =
        Flaky { down: rig.down.clone(), scope, unavailable: rig.unavailable.clone(), applied: rig.applied.clone() };
    let runtime = env.runtime(settings, handler, &metrics);
    let progress = runtime.progress();
    let ready = move || ReadyState {
        ready: progress.is_ready(),
        outage: progress.outage().map(|outage| (outage.dependency, outage.scope)),
    };
    (rig, Running::start(runtime), ready)
}

#[derive(Debug, PartialEq)]
struct ReadyState {
    ready: bool,
    outage: Option<(String, PauseScope)>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partition_waits_out_its_dependency_in_order_while_the_other_partition_flows() {
    let env = Env::start().await;
    let topic = env.topic(2).await;
    for id in ["a-1", "a-2"] {
        env.order(&topic, 0, id).await;
    }
    env.order(&topic, 1, "b-1").await;
    let (rig, running, ready) = start(&env, outage_settings(&topic), PauseScope::Partition);

    rig.until_applied(1, 1).await;
    eventually("partition 0 paused", WAIT, || async { (rig.paused() == 1.0).then_some(()) }).await;
    env.order(&topic, 0, "a-3").await;
    env.order(&topic, 1, "b-2").await;
    rig.until_applied(1, 2).await;
    assert!(rig.of(0).is_empty(), "partition 0 applied nothing while its dependency was down");
    let not_ready = ReadyState { ready: false, outage: Some((DEPENDENCY.into(), PauseScope::Partition)) };
    eventually("not ready after ready_after", WAIT, || async { (ready() == not_ready).then_some(()) }).await;
    assert_eq!(rig.paused(), 1.0, "only partition 0 is paused");

    let calls = rig.unavailable.load(Ordering::SeqCst);
    assert!(calls >= 2, "partition 0 kept calling (with backoff) during the outage: {calls}");
    rig.down.store(false, Ordering::SeqCst);
    rig.until_applied(0, 3).await;
    assert_eq!(ready(), ReadyState { ready: true, outage: None }, "ready again once the dependency is back");
    assert_eq!(rig.paused(), 0.0);
    running.stop().await;

    let partition_0: Vec<(i64, String)> =
        rig.applied().into_iter().filter(|(p, _, _)| *p == 0).map(|(_, offset, id)| (offset, id)).collect();
    assert_eq!(
        partition_0,
        [(0, "a-1".to_owned()), (1, "a-2".to_owned()), (2, "a-3".to_owned())],
        "every event of the paused partition, once, in order, after the outage"
    );
    assert_eq!(rig.of(1), ["b-1", "b-2"]);
    rig.assert_nothing_spent(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_wide_outage_holds_every_partition_until_the_probe_gets_through() {
    let env = Env::start().await;
    let topic = env.topic(2).await;
    for id in ["a-1", "a-2"] {
        env.order(&topic, 0, id).await;
    }
    let (rig, running, ready) = start(&env, outage_settings(&topic), PauseScope::Consumer);

    eventually("partition 0 found the dependency down", WAIT, || async {
        (rig.unavailable.load(Ordering::SeqCst) >= 1).then_some(())
    })
    .await;
    env.order(&topic, 1, "b-1").await;
    eventually("partition 1 waiting at the consumer's gate", WAIT, || async { (rig.paused() == 2.0).then_some(()) })
        .await;
    let not_ready = ReadyState { ready: false, outage: Some((DEPENDENCY.into(), PauseScope::Consumer)) };
    eventually("not ready after ready_after", WAIT, || async { (ready() == not_ready).then_some(()) }).await;
    assert!(rig.applied().is_empty(), "partition 1 was not called while the consumer was paused");

    rig.down.store(false, Ordering::SeqCst);
    rig.until_applied(0, 2).await;
    rig.until_applied(1, 1).await;
    assert_eq!(ready(), ReadyState { ready: true, outage: None });
    assert_eq!(rig.paused(), 0.0);
    running.stop().await;

    let applied = rig.applied();
    assert_eq!(applied[0].0, 0, "the probe's partition went first, then the gate opened: {applied:?}");
    assert_eq!(rig.of(0), ["a-1", "a-2"]);
    assert_eq!(rig.of(1), ["b-1"]);
    rig.assert_nothing_spent(&env).await;
}
