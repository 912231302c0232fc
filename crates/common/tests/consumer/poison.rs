//! Records that cannot be handled go to the dead-letter topic with headers that say why, and
//! the partition moves on; later events of the same key are handled normally.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use eventline_common::events::OrderPlaced;
use eventline_common::kafka::consumer::metrics::{DEAD_LETTERED_TOTAL, EVENTS_TOTAL};
use eventline_common::kafka::consumer::{
    group_lag, Batch, ConsumerMetrics, DeadLetterInfo, DeadLetterReason, Handler, HandlerError, OffsetSource,
};
use eventline_testkit::eventually;
use rdkafka::message::Message;

use crate::support::{envelope, header, metric, read_all, settings, shared, Env, Running, Shared, ORDER_PLACED, WAIT};

/// Fails events by their CloudEvents subject: `poison` permanently (naming it), `stuck`
/// retryably for the whole batch, forever. Counts the calls that included each offset.
struct Picky {
    calls: Shared<BTreeMap<i64, u32>>,
    applied: Shared<Vec<(i64, String)>>,
}

impl Handler for Picky {
    async fn handle(&self, batch: &Batch) -> Result<(), HandlerError> {
        {
            let mut calls = self.calls.lock().unwrap();
            for event in batch {
                *calls.entry(event.offset).or_default() += 1;
            }
        }
        let mut orders = Vec::new();
        for event in batch {
            match event.envelope.subject.as_deref() {
                Some("poison") => {
                    return Err(HandlerError::permanent_at(event.offset, anyhow::anyhow!("cannot apply this order")))
                }
                Some("stuck") => return Err(HandlerError::retryable(anyhow::anyhow!("downstream keeps failing"))),
                _ => {}
            }
            let order: OrderPlaced = event.event()?;
            orders.push((event.offset, order.order_id));
        }
        self.applied.lock().unwrap().extend(orders);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_lands_in_the_dead_letter_topic_with_its_story_and_the_partition_moves_on() {
    let env = Env::start().await;
    let topic = env.topic(1).await;
    let garbage_envelope = envelope(ORDER_PLACED);
    let unknown_schema_value = [&[0u8, 0x00, 0x0F, 0x42, 0x3F][..], b"\x02ab"].concat(); // schema id 999999
    assert_eq!(env.order(&topic, 0, "o-1").await, 0);
    env.raw(&topic, 0, Some("g-1"), b"\x07garbage", Some(garbage_envelope.to_headers()), None).await;
    env.order(&topic, 0, "o-2").await;
    env.raw(&topic, 0, Some("u-1"), &unknown_schema_value, Some(envelope(ORDER_PLACED).to_headers()), None).await;
    env.order_with(&topic, 0, "o-k", Some("poison"), None).await;
    env.order(&topic, 0, "o-k").await;
    env.order_with(&topic, 0, "o-s", Some("stuck"), None).await;
    env.order(&topic, 0, "o-3").await;
    env.raw(&topic, 0, None, b"no headers at all", None, None).await;
    assert_eq!(env.order(&topic, 0, "o-4").await, 9);

    let mut settings = settings(&[&topic]);
    settings.batch_max_size = 10;
    settings.batch_linger = Duration::from_millis(100);
    settings.retry.max_attempts = 3;
    let group = settings.group_id.clone();
    let dead_letter_topic = settings.dead_letter_topic();
    let registry = prometheus::Registry::new();
    let metrics = ConsumerMetrics::registered_in(&registry).unwrap();
    let calls = shared::<BTreeMap<i64, u32>>();
    let applied = shared::<Vec<(i64, String)>>();
    let handler = Picky { calls: calls.clone(), applied: applied.clone() };
    let started = Utc::now();
    let running = Running::start(env.runtime(settings, handler, &metrics));
    eventually("the good events applied", WAIT, || async { (applied.lock().unwrap().len() >= 5).then_some(()) }).await;
    let dead = read_all(&env.kafka(), &dead_letter_topic, 5).await;
    running.stop().await;

    let applied = applied.lock().unwrap().clone();
    let expected: Vec<(i64, String)> = [(0, "o-1"), (2, "o-2"), (5, "o-k"), (7, "o-3"), (9, "o-4")]
        .into_iter()
        .map(|(o, id)| (o, id.to_owned()))
        .collect();
    assert_eq!(
        applied, expected,
        "the rest of the partition, in order, once; o-k's later event despite its poisoned one"
    );

    let calls = calls.lock().unwrap().clone();
    let by_offset: BTreeMap<i64, (DeadLetterInfo, &rdkafka::message::OwnedMessage)> = dead
        .iter()
        .map(|m| {
            let info = DeadLetterInfo::from_headers(m.headers().unwrap()).unwrap();
            (info.original_offset, (info, m))
        })
        .collect();
    assert_eq!(by_offset.keys().copied().collect::<Vec<_>>(), [1, 3, 4, 6, 8]);
    for (offset, (info, _)) in &by_offset {
        assert_eq!(info.original_topic, topic, "{offset}");
        assert_eq!(info.original_partition, 0);
        assert_eq!(info.group, group);
        assert!(
            info.time >= started - chrono::Duration::seconds(1) && info.time <= Utc::now(),
            "{offset}: {}",
            info.time
        );
        assert!(!info.error.is_empty());
    }
    let (garbage, garbage_record) = &by_offset[&1];
    assert_eq!((garbage.reason, garbage.attempts), (DeadLetterReason::Decode, 0));
    assert!(garbage.error.contains("magic byte"), "{}", garbage.error);
    assert_eq!(garbage_record.payload(), Some(&b"\x07garbage"[..]), "original value kept");
    assert_eq!(garbage_record.key(), Some(&b"g-1"[..]), "original key kept");
    assert_eq!(header(garbage_record, "ce_id"), Some(garbage_envelope.id.to_string()), "original headers kept");

    let (unknown, unknown_record) = &by_offset[&3];
    assert_eq!((unknown.reason, unknown.attempts), (DeadLetterReason::UnknownSchema, 0));
    assert!(unknown.error.contains("999999"), "{}", unknown.error);
    assert_eq!(unknown_record.payload(), Some(unknown_schema_value.as_slice()));

    let (poison, poison_record) = &by_offset[&4];
    assert_eq!(poison.reason, DeadLetterReason::Permanent);
    assert_eq!(poison.attempts, calls[&4], "attempts = handler calls that included it");
    assert!(poison.error.contains("cannot apply this order"), "{}", poison.error);
    assert_eq!(poison_record.key(), Some(&b"o-k"[..]));

    let (stuck, _) = &by_offset[&6];
    assert_eq!(stuck.reason, DeadLetterReason::RetriesExhausted);
    assert_eq!(stuck.attempts, calls[&6]);
    assert!(stuck.attempts >= 3, "at least the retry budget: {}", stuck.attempts);
    assert!(stuck.error.contains("downstream keeps failing"), "{}", stuck.error);

    let (headerless, _) = &by_offset[&8];
    assert_eq!(headerless.reason, DeadLetterReason::Decode);
    assert!(headerless.error.contains("no headers"), "{}", headerless.error);

    let dead_lettered = |reason: &str| metric(&registry, DEAD_LETTERED_TOTAL, &[("group", &group), ("reason", reason)]);
    assert_eq!(
        [
            dead_lettered("decode"),
            dead_lettered("unknown_schema"),
            dead_lettered("permanent"),
            dead_lettered("retries_exhausted")
        ],
        [2.0, 1.0, 1.0, 1.0]
    );
    assert_eq!(metric(&registry, EVENTS_TOTAL, &[("group", &group), ("outcome", "dead_lettered")]), 5.0);

    let lag = group_lag(&env.kafka(), &group, std::slice::from_ref(&topic), OffsetSource::Kafka).await.unwrap();
    assert_eq!((lag[0].committed, lag[0].lag), (Some(10), 0), "the partition moved past every poison record");
}
