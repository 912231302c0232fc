//! Events in, handler calls out: every event once, in order per partition, partitions in
//! parallel; retries that wait only their own partition; lag.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventline_common::events::OrderPlaced;
use eventline_common::kafka::consumer::metrics::{EVENTS_TOTAL, LAG_EVENTS, RETRIES_TOTAL};
use eventline_common::kafka::consumer::{group_lag, Batch, ConsumerMetrics, Handler, HandlerError, OffsetSource};
use eventline_testkit::eventually;

use crate::support::{end_offset, metric, settings, shared, Env, Running, Shared, WAIT};

#[derive(Default)]
struct Seen {
    /// (partition, offset, order id) in the order the handler saw them.
    events: Vec<(i32, i64, String)>,
    in_flight: usize,
    max_in_flight: usize,
}

struct Recorder {
    seen: Shared<Seen>,
}

impl Handler for Recorder {
    async fn handle(&self, batch: &Batch) -> Result<(), HandlerError> {
        {
            let mut seen = self.seen.lock().unwrap();
            seen.in_flight += 1;
            seen.max_in_flight = seen.max_in_flight.max(seen.in_flight);
        }
        // Hold the call until another partition's call overlaps it (bounded), which only
        // happens when partitions are handled concurrently.
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.seen.lock().unwrap().max_in_flight < 2 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut decoded = Vec::new();
        for event in batch {
            let order: OrderPlaced = event.event()?;
            assert_eq!(event.key.as_deref(), Some(order.order_id.as_str()), "the key is the aggregate id");
            let parent = event.envelope.traceparent.expect("published with a traceparent");
            assert_eq!(event.trace().trace_id, parent.trace_id, "the trace continues");
            assert_ne!(event.trace().span_id, parent.span_id, "in a span of its own");
            decoded.push((event.partition, event.offset, order.order_id));
        }
        let mut seen = self.seen.lock().unwrap();
        seen.events.extend(decoded);
        seen.in_flight -= 1;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_event_reaches_the_handler_once_in_partition_order_with_partitions_in_parallel() {
    let env = Env::start().await;
    let topic = env.topic(3).await;
    let mut expected = BTreeMap::new();
    for i in 0..18 {
        let partition = i % 3;
        let order_id = format!("order-{i}");
        let offset = env.order(&topic, partition, &order_id).await;
        expected.insert((partition, offset), order_id);
    }
    // A type this consumer does not ask for, last in its partition: skipped, offset advanced.
    env.cancellation(&topic, 2, "order-0").await;

    let mut settings = settings(&[&topic]);
    settings.batch_max_size = 4;
    let group = settings.group_id.clone();
    let registry = prometheus::Registry::new();
    let metrics = ConsumerMetrics::registered_in(&registry).unwrap();
    let seen = shared::<Seen>();
    let running = Running::start(env.runtime(settings, Recorder { seen: seen.clone() }, &metrics));

    eventually("every event handled", WAIT, || async {
        (seen.lock().unwrap().events.len() >= expected.len()).then_some(())
    })
    .await;
    eventually("lag measured at zero on every partition", WAIT, || async {
        let families = registry.gather();
        let lag = families.iter().find(|f| f.name() == LAG_EVENTS)?;
        // The topic's three partitions (the group's retry topic has a series of its own).
        let series: Vec<_> =
            lag.get_metric().iter().filter(|m| m.get_label().iter().any(|l| l.value() == topic)).collect();
        (series.len() == 3 && series.iter().all(|m| m.get_gauge().get_value() == 0.0)).then_some(())
    })
    .await;
    running.stop().await;

    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let got: BTreeMap<(i32, i64), String> = seen.events.iter().map(|(p, o, id)| ((*p, *o), id.clone())).collect();
    assert_eq!(got, expected, "every event exactly once");
    assert_eq!(seen.events.len(), expected.len(), "no event twice");
    for partition in 0..3 {
        let offsets: Vec<i64> = seen.events.iter().filter(|(p, _, _)| *p == partition).map(|(_, o, _)| *o).collect();
        assert!(offsets.windows(2).all(|w| w[0] < w[1]), "partition {partition} out of order: {offsets:?}");
    }
    assert!(seen.max_in_flight >= 2, "partitions were handled one at a time");
    assert_eq!(metric(&registry, EVENTS_TOTAL, &[("group", &group), ("outcome", "skipped")]), 1.0);
    assert_eq!(metric(&registry, EVENTS_TOTAL, &[("group", &group), ("outcome", "handled")]), 18.0);

    let lag = group_lag(&env.kafka(), &group, std::slice::from_ref(&topic), OffsetSource::Kafka).await.unwrap();
    assert_eq!(lag.len(), 3);
    for partition in lag {
        assert_eq!(
            partition.committed,
            Some(partition.end),
            "{partition:?}: committed through the end, the skipped event too"
        );
        assert_eq!(partition.lag, 0);
    }
}

struct Flaky {
    flaky_order: String,
    /// Events of the other partition handled.
    others: Arc<AtomicUsize>,
    others_expected: usize,
    failures: Arc<AtomicUsize>,
    applied: Shared<Vec<String>>,
}

impl Handler for Flaky {
    async fn handle(&self, batch: &Batch) -> Result<(), HandlerError> {
        let mut orders = Vec::new();
        for event in batch {
            let order: OrderPlaced = event.event()?;
            // Not ready until it failed once and the other partition got through meanwhile.
            if order.order_id == self.flaky_order
                && (self.failures.load(Ordering::SeqCst) == 0
                    || self.others.load(Ordering::SeqCst) < self.others_expected)
            {
                self.failures.fetch_add(1, Ordering::SeqCst);
                return Err(HandlerError::retryable_at(event.offset, anyhow::anyhow!("downstream not ready")));
            }
            orders.push(order.order_id);
        }
        let others = orders.iter().filter(|id| **id != self.flaky_order).count();
        self.applied.lock().unwrap().extend(orders);
        self.others.fetch_add(others, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retryable_failure_backs_off_and_applies_once_while_other_partitions_go_on() {
    let env = Env::start().await;
    let topic = env.topic(2).await;
    env.order(&topic, 0, "order-flaky").await;
    for i in 0..5 {
        env.order(&topic, 1, &format!("order-{i}")).await;
    }
    let mut settings = settings(&[&topic]);
    settings.retry.max_attempts = 200;
    settings.retry.initial_backoff = Duration::from_millis(20);
    settings.retry.max_backoff = Duration::from_millis(100);
    let group = settings.group_id.clone();
    let dead_letter_topic = settings.dead_letter_topic();
    let registry = prometheus::Registry::new();
    let metrics = ConsumerMetrics::registered_in(&registry).unwrap();
    let applied = shared::<Vec<String>>();
    let failures = Arc::new(AtomicUsize::new(0));
    let handler = Flaky {
        flaky_order: "order-flaky".into(),
        others: Arc::new(AtomicUsize::new(0)),
        others_expected: 5,
        failures: failures.clone(),
        applied: applied.clone(),
    };
    let running = Running::start(env.runtime(settings, handler, &metrics));
    eventually("the flaky event applied", WAIT, || async {
        applied.lock().unwrap().iter().any(|id| id == "order-flaky").then_some(())
    })
    .await;
    running.stop().await;

    let applied = applied.lock().unwrap().clone();
    assert_eq!(applied.iter().filter(|id| *id == "order-flaky").count(), 1, "applied once: {applied:?}");
    assert_eq!(applied.len(), 6, "{applied:?}");
    assert_eq!(
        applied.last().map(String::as_str),
        Some("order-flaky"),
        "the other partition was not blocked: {applied:?}"
    );
    let failures = failures.load(Ordering::SeqCst);
    assert!(failures >= 1);
    assert_eq!(metric(&registry, RETRIES_TOTAL, &[("group", &group)]), failures as f64);
    assert_eq!(end_offset(&env.kafka(), &dead_letter_topic, 0).await, 0, "nothing dead-lettered");
    let unique: BTreeSet<&String> = applied.iter().collect();
    assert_eq!(unique.len(), applied.len());
}

struct Values {
    values: Shared<Vec<apache_avro::types::Value>>,
    typed: Shared<Vec<OrderPlaced>>,
}

impl Handler for Values {
    async fn handle(&self, batch: &Batch) -> Result<(), HandlerError> {
        for event in batch {
            self.typed.lock().unwrap().push(event.event()?);
            self.values.lock().unwrap().push(event.value.clone());
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_are_resolved_into_the_reader_schema_the_consumer_brings() {
    let env = Env::start().await;
    let topic = env.topic(1).await;
    env.order(&topic, 0, "order-1").await;
    // A newer reader: one more field, with a default.
    let catalog = eventline_common::catalog::Catalog::embedded().unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&catalog.event("OrderPlaced").unwrap().schema_json).unwrap();
    json["fields"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "channel", "type": "string", "default": "web"}));
    let reader = apache_avro::Schema::parse_str(&json.to_string()).unwrap();
    let values = shared::<Vec<apache_avro::types::Value>>();
    let typed = shared::<Vec<OrderPlaced>>();
    let handler = Values { values: values.clone(), typed: typed.clone() };
    let runtime = env
        .runtime(settings(&[&topic]), handler, &ConsumerMetrics::registered_in(&prometheus::Registry::new()).unwrap())
        .with_reader_schema("OrderPlaced", Arc::new(reader));
    let running = Running::start(runtime);
    eventually("the event handled", WAIT, || async { (!values.lock().unwrap().is_empty()).then_some(()) }).await;
    running.stop().await;
    let apache_avro::types::Value::Record(fields) = &values.lock().unwrap()[0] else { panic!("not a record") };
    let channel = fields.iter().find(|(name, _)| name == "channel").map(|(_, v)| v.clone());
    assert_eq!(channel, Some(apache_avro::types::Value::String("web".into())), "filled from the reader's default");
    assert_eq!(typed.lock().unwrap()[0], eventline_common::events::samples::order_placed("order-1"));
}
