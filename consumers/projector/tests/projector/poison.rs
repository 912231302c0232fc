//! Events the projector cannot read go to its dead-letter topic; the partition moves on.

use std::time::Duration;

use chrono::Utc;
use eventline_common::avro::{CodecError, SchemaId};
use eventline_common::catalog::Catalog;
use eventline_common::envelope::Envelope;
use eventline_common::kafka::consumer::dead_letter::{header, DeadLetterInfo, DeadLetterReason};
use eventline_common::registry_client::RegistryClientError;
use eventline_e2e::read_topic;
use eventline_projector::domain::OrderStatus;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::{Headers as _, Message as _, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::events::{placed, recorded, shipped};
use crate::support::{Backend, Env, Running, WAIT};

/// Every header a dead letter gains, each once.
const DEAD_LETTER_HEADERS: [&str; 8] = [
    header::ORIGINAL_TOPIC,
    header::ORIGINAL_PARTITION,
    header::ORIGINAL_OFFSET,
    header::ERROR,
    header::ERROR_KIND,
    header::ATTEMPTS,
    header::TIME,
    header::GROUP,
];

/// A record the projector cannot read, and what its dead letter must say about it.
struct Poison {
    value: Vec<u8>,
    headers: Option<OwnedHeaders>,
    reason: DeadLetterReason,
    /// The whole error text, or (for a record without headers) its start.
    error: String,
}

/// The headers of `message` as (key, value) pairs, in order: those a dead letter gains, or the
/// others.
fn headers_of(message: &OwnedMessage, dead_letter: bool) -> Vec<(String, Option<Vec<u8>>)> {
    message.headers().map_or_else(Vec::new, |headers| {
        headers
            .iter()
            .filter(|h| h.key.starts_with(header::PREFIX) == dead_letter)
            .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
            .collect()
    })
}

fn pairs(headers: Option<&OwnedHeaders>) -> Vec<(String, Option<Vec<u8>>)> {
    headers.map_or_else(Vec::new, |headers| {
        headers.iter().map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec))).collect()
    })
}

/// The partitions of `topic`, and the records on them from the broker's watermarks (from low to
/// high watermark): the exact count, not "no more arrived while we waited".
async fn records_on(bootstrap: String, topic: String) -> (i32, i64) {
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer =
            eventline_common::kafka::KafkaSettings::for_bootstrap(&bootstrap).client_config().create().unwrap();
        let timeout = Duration::from_secs(10);
        let metadata = consumer.fetch_metadata(Some(&topic), timeout).unwrap();
        let partitions = metadata.topics()[0].partitions();
        assert!(!partitions.is_empty(), "{topic} has no partitions");
        let records = partitions
            .iter()
            .map(|p| {
                let (low, high) = consumer.fetch_watermarks(&topic, p.id(), timeout).unwrap();
                high - low
            })
            .sum();
        (partitions.len() as i32, records)
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn garbage_and_unknown_schemas_are_dead_lettered_and_the_rest_is_applied() {
    let env = Env::start().await;
    let projector = Running::start(&env, Backend::Sqlite).await;
    let first = env.send(&recorded(placed("order-p", "cust-p", 100, 1))).await;
    let producer: FutureProducer = env.stack.broker.kafka_settings().client_config().create().unwrap();
    // An envelope that reads, for an event type the projector wants: what fails is the value.
    let envelope = Envelope {
        id: uuid::Uuid::new_v4(),
        source: "/tests/projector/poison".into(),
        event_type: Catalog::embedded().unwrap().event("OrderShipped").unwrap().full_name.clone(),
        time: Utc::now(),
        subject: None,
        traceparent: None,
        correlation_id: None,
    }
    .to_headers();
    let unknown_id = 0x7f7f;
    let poisons = [
        // Not Avro and no headers at all; not Avro behind an envelope; the wire format with a
        // schema id the registry does not know.
        Poison {
            value: b"not an event".to_vec(),
            headers: None,
            reason: DeadLetterReason::Decode,
            error: "the record has no headers".into(),
        },
        Poison {
            value: b"not an event".to_vec(),
            headers: Some(envelope.clone()),
            reason: DeadLetterReason::Decode,
            error: CodecError::BadMagic { found: b'n' }.to_string(),
        },
        Poison {
            value: [&[0u8], &u32::to_be_bytes(unknown_id)[..], &[1, 2, 3]].concat(),
            headers: Some(envelope),
            reason: DeadLetterReason::UnknownSchema,
            error: RegistryClientError::UnknownSchemaId(SchemaId(unknown_id)).to_string(),
        },
    ];
    let sent_from = Utc::now();
    for poison in &poisons {
        let mut record: FutureRecord<'_, str, [u8]> =
            FutureRecord::to(&first.topic).partition(first.partition).key("order-p").payload(&poison.value);
        if let Some(headers) = &poison.headers {
            record = record.headers(headers.clone());
        }
        producer.send(record, Duration::from_secs(10)).await.map_err(|(e, _)| e).unwrap();
    }
    let last = env.send(&recorded(shipped("order-p"))).await;
    assert_eq!(
        (last.topic.as_str(), last.partition, last.offset),
        (first.topic.as_str(), first.partition, first.offset + 4),
        "same key, same partition, right after the poison"
    );
    projector.caught_up(std::slice::from_ref(&last)).await;
    let caught_up_at = Utc::now();

    let order = projector.store.order("order-p").await.unwrap().unwrap();
    assert_eq!(order.status(), OrderStatus::Shipped);
    let dlq = format!("{}.dlq", projector.group);
    let bootstrap = env.stack.broker.bootstrap_servers();
    // Past the shipment, every poison record was dead-lettered (and acknowledged) already.
    let (partitions, records) = records_on(bootstrap.clone(), dlq.clone()).await;
    assert_eq!(records, poisons.len() as i64, "dead letters on {dlq}");
    let dead = read_topic(&bootstrap, &dlq, partitions, poisons.len(), WAIT).await;
    for (i, (letter, poison)) in dead.iter().zip(&poisons).enumerate() {
        assert_eq!(letter.payload(), Some(&poison.value[..]), "value of dead letter {i}");
        assert_eq!(letter.key(), Some(&b"order-p"[..]), "key of dead letter {i}");
        assert_eq!(
            headers_of(letter, false),
            pairs(poison.headers.as_ref()),
            "dead letter {i} keeps the original headers"
        );
        let mut gained: Vec<String> = headers_of(letter, true).into_iter().map(|(k, _)| k).collect();
        gained.sort();
        let mut expected = DEAD_LETTER_HEADERS.map(str::to_owned).to_vec();
        expected.sort();
        assert_eq!(gained, expected, "dead-letter headers of dead letter {i}, each once");

        let info = DeadLetterInfo::from_headers(letter.headers().unwrap()).unwrap();
        assert_eq!(
            (info.original_topic.as_str(), info.original_partition, info.original_offset),
            (first.topic.as_str(), first.partition, first.offset + 1 + i as i64),
            "where dead letter {i} came from"
        );
        assert_eq!(info.reason, poison.reason, "reason of dead letter {i}: {}", info.error);
        assert!(
            info.error.starts_with(&poison.error) && (poison.headers.is_none() || info.error == poison.error),
            "error of dead letter {i}: {:?}, expected {:?}",
            info.error,
            poison.error
        );
        assert_eq!(info.attempts, 0, "dead letter {i} never reached the handler");
        assert_eq!(info.group, projector.group);
        // The header keeps milliseconds.
        let window = sent_from - chrono::Duration::milliseconds(1)..=caught_up_at;
        assert!(window.contains(&info.time), "time of dead letter {i}: {} not in {window:?}", info.time);
    }
    projector.stop().await;
    assert_eq!(
        records_on(bootstrap, dlq.clone()).await.1,
        poisons.len() as i64,
        "dead letters on {dlq} after the projector stopped"
    );
}
