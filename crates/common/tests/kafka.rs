//! The producer and topic administration against a real Apache Kafka broker.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use chrono::Utc;
use eventline_common::avro::{self, SchemaId};
use eventline_common::catalog::Catalog;
use eventline_common::envelope::{Envelope, TraceParent};
use eventline_common::events::{samples, OrderPlaced};
use eventline_common::kafka::admin::{ensure_topics, topic_names, TopicRequest};
use eventline_common::kafka::producer::{EventProducer, OutgoingEvent, OutgoingRecord, ProducerSettings};
use eventline_common::kafka::{KafkaSettings, Position};
use eventline_testkit::{unique, Broker};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};

#[tokio::test]
async fn topics_are_created_once_with_their_partition_counts() {
    let broker = Broker::shared();
    let settings = broker.kafka_settings();
    let (three, five) = (unique("orders"), unique("payments"));
    let request = [
        TopicRequest { name: three.clone(), partitions: 3, replication: 1 },
        TopicRequest { name: five.clone(), partitions: 5, replication: 1 },
    ];
    let mut created = ensure_topics(&settings, &request).await.unwrap();
    created.sort();
    let mut expected = vec![three.clone(), five.clone()];
    expected.sort();
    assert_eq!(created, expected);
    assert!(ensure_topics(&settings, &request).await.unwrap().is_empty(), "second call must create nothing");
    assert!(topic_names(&settings).await.unwrap().contains(&three));
    assert_eq!(partition_count(&settings, &three).await, 3);
    assert_eq!(partition_count(&settings, &five).await, 5);
}

/// How many partitions the broker's metadata gives `topic`.
async fn partition_count(settings: &KafkaSettings, topic: &str) -> usize {
    let config = settings.client_config();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: rdkafka::consumer::BaseConsumer = config.create().unwrap();
        let metadata = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10)).unwrap();
        metadata.topics()[0].partitions().len()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_published_event_arrives_with_key_envelope_and_framed_value() {
    let broker = Broker::shared();
    let settings = broker.kafka_settings();
    let topic = unique("orders");
    ensure_topics(&settings, &[TopicRequest { name: topic.clone(), partitions: 2, replication: 1 }]).await.unwrap();

    let catalog = Catalog::embedded().unwrap();
    let schema = catalog.event("OrderPlaced").unwrap().schema.clone();
    let order = samples::order_placed("order-1");
    let value = avro::encode(SchemaId(42), &schema, &order).unwrap();
    let envelope = Envelope {
        id: uuid::Uuid::new_v4(),
        source: "/tests".into(),
        event_type: "com.eventline.commerce.OrderPlaced".into(),
        time: Utc::now(),
        subject: None,
        traceparent: Some(TraceParent::new_root()),
        correlation_id: Some("corr".into()),
    };
    let producer = EventProducer::new(&settings, &ProducerSettings::default()).unwrap();
    let position = producer
        .send(OutgoingEvent { topic: &topic, key: &order.order_id, value: &value, envelope: &envelope })
        .await
        .unwrap();
    assert_eq!(position.topic, topic);
    assert!(position.offset >= 0);

    let message = read_back(&settings, &position).await;
    assert_eq!(message.key(), Some(order.order_id.as_bytes()));
    assert_eq!(message.offset(), position.offset);
    let received = Envelope::from_headers(message.headers().unwrap()).unwrap();
    assert_eq!(received, Envelope { time: received.time, ..envelope.clone() });
    assert_eq!(received.time.timestamp_millis(), envelope.time.timestamp_millis());
    let framed = avro::unframe(message.payload().unwrap()).unwrap();
    assert_eq!(framed.schema_id, SchemaId(42));
    let back: OrderPlaced = avro::decode(framed.body, &schema, None).unwrap();
    assert_eq!(back, order);
}

/// Dead letters and redrives publish records as they are: what lands is exactly what was given.
#[tokio::test]
async fn a_raw_record_lands_on_the_partition_asked_with_its_bytes_headers_and_time() {
    let broker = Broker::shared();
    let settings = broker.kafka_settings();
    let topic = unique("letters");
    ensure_topics(&settings, &[TopicRequest { name: topic.clone(), partitions: 3, replication: 1 }]).await.unwrap();
    let producer = EventProducer::new(&settings, &ProducerSettings::default()).unwrap();
    let headers = OwnedHeaders::new()
        .insert(Header { key: "ce_id", value: Some(b"e-1".as_slice()) })
        .insert(Header { key: "empty", value: None::<&[u8]> });
    let timestamp = Utc::now().timestamp_millis() - 60_000;
    let position = producer
        .send_record(OutgoingRecord {
            topic: &topic,
            partition: Some(2),
            key: None,
            payload: Some(b"\0raw"),
            headers,
            timestamp: Some(timestamp),
        })
        .await
        .unwrap();
    assert_eq!((position.topic.as_str(), position.partition), (topic.as_str(), 2));

    let message = read_back(&settings, &position).await;
    assert_eq!(message.offset(), position.offset);
    assert_eq!(message.key(), None);
    assert_eq!(message.payload(), Some(b"\0raw".as_slice()));
    assert_eq!(message.timestamp().to_millis(), Some(timestamp));
    let received: Vec<(&str, Option<&[u8]>)> = message.headers().unwrap().iter().map(|h| (h.key, h.value)).collect();
    assert_eq!(received, [("ce_id", Some(b"e-1".as_slice())), ("empty", None)]);
}

/// The record at `position`, read with a consumer assigned there.
async fn read_back(settings: &KafkaSettings, position: &Position) -> OwnedMessage {
    let consumer: StreamConsumer =
        settings.client_config().set("group.id", unique("g")).set("enable.auto.commit", "false").create().unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(&position.topic, position.partition, Offset::Offset(position.offset)).unwrap();
    consumer.assign(&assignment).unwrap();
    let message = tokio::time::timeout(Duration::from_secs(20), consumer.recv()).await.unwrap().unwrap();
    message.detach()
}

#[tokio::test]
async fn sending_to_a_missing_topic_fails_within_the_delivery_timeout() {
    let broker = Broker::shared();
    let settings = broker.kafka_settings();
    let producer = EventProducer::new(
        &settings,
        &ProducerSettings { delivery_timeout: Duration::from_secs(2), ..ProducerSettings::default() },
    )
    .unwrap();
    let envelope = bare_envelope();
    let topic = unique("missing");
    let started = std::time::Instant::now();
    let outcome =
        producer.send(OutgoingEvent { topic: &topic, key: "k", value: b"\0\0\0\0\x01", envelope: &envelope }).await;
    assert!(outcome.is_err(), "a topic that does not exist must not be acknowledged: {outcome:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn the_producer_recovers_after_the_broker_was_down() {
    let mut broker = Broker::start().await;
    let settings = broker.kafka_settings();
    let topic = unique("orders");
    ensure_topics(&settings, &[TopicRequest { name: topic.clone(), partitions: 1, replication: 1 }]).await.unwrap();
    let producer = EventProducer::new(
        &settings,
        &ProducerSettings { delivery_timeout: Duration::from_secs(2), ..ProducerSettings::default() },
    )
    .unwrap();
    let envelope = bare_envelope();
    let send = || producer.send(OutgoingEvent { topic: &topic, key: "k", value: b"\0\0\0\0\x01", envelope: &envelope });
    // Acknowledged records are on the log exactly once, across two stops: each acknowledged
    // send takes the next offset, and nothing refused while the broker was down lands later.
    let mut acknowledged = 0;
    for stop in 0..2 {
        for _ in 0..=stop {
            assert_eq!(send().await.unwrap().offset, acknowledged, "offsets are handed out in order");
            acknowledged += 1;
        }
        broker.stop().await;
        assert!(send().await.is_err(), "nothing is acknowledged while the broker is down");
        broker.resume().await;
        let position = eventline_testkit::eventually(
            "a send to succeed after the broker returned",
            Duration::from_secs(60),
            || async { send().await.ok() },
        )
        .await;
        assert_eq!(position.offset, acknowledged, "the send refused while down must not have landed");
        acknowledged += 1;
    }
    let config = settings.client_config();
    let high = tokio::task::spawn_blocking(move || {
        let consumer: rdkafka::consumer::BaseConsumer = config.create().unwrap();
        consumer.fetch_watermarks(&topic, 0, Duration::from_secs(10)).unwrap().1
    })
    .await
    .unwrap();
    assert_eq!(high, acknowledged, "the log holds exactly the acknowledged records");
}

fn bare_envelope() -> Envelope {
    Envelope {
        id: uuid::Uuid::new_v4(),
        source: "/tests".into(),
        event_type: "t".into(),
        time: Utc::now(),
        subject: None,
        traceparent: None,
        correlation_id: None,
    }
}
