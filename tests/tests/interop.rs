//! Interoperability with software nobody here wrote: Python confluent-kafka (librdkafka) with
//! its AvroSerializer, AvroDeserializer and SchemaRegistryClient, against a real Apache Kafka broker
//! and our schema registry.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use chrono::Utc;
use eventline_common::avro;
use eventline_common::envelope::{Envelope, TraceParent};
use eventline_common::events::{samples, DomainEvent, OrderLine, OrderPlaced};
use eventline_common::kafka::producer::{EventProducer, OutgoingEvent, ProducerSettings};
use eventline_e2e::{read_topic, Stack};
use eventline_testkit::run_python;
use rdkafka::message::Message;
use serde_json::Value;

const CONSUME: &str = include_str!("../python/consume_avro.py");
const PRODUCE: &str = include_str!("../python/produce_avro.py");

#[tokio::test]
async fn python_avro_deserializer_decodes_what_we_produce() {
    let stack = Stack::start().await;
    let producer = EventProducer::new(&stack.broker.kafka_settings(), &ProducerSettings::default()).unwrap();
    let mut sent = Vec::new();
    for i in 0..5 {
        let mut order = samples::order_placed(&format!("order-{i}"));
        order.total_minor += i;
        order.lines.push(OrderLine { sku: format!("SKU-{i}"), quantity: 1, unit_price_minor: i });
        let (registered, value) = stack.contracts.encode(&order).unwrap();
        let envelope = Envelope {
            id: uuid::Uuid::new_v4(),
            source: "/tests/interop".into(),
            event_type: registered.spec.full_name.clone(),
            time: Utc::now(),
            subject: None,
            traceparent: Some(TraceParent::new_root()),
            correlation_id: None,
        };
        producer
            .send(OutgoingEvent { topic: &registered.spec.topic, key: order.key(), value: &value, envelope: &envelope })
            .await
            .unwrap();
        sent.push((order, envelope, registered.schema_id));
    }

    let output =
        run_python(CONSUME, &[&stack.broker.bootstrap_servers(), &stack.registry.url, "orders", "6", "5"]).await;
    let records: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(records.len(), 5, "python read {records:?}");
    for (order, envelope, schema_id) in sent {
        let record = records
            .iter()
            .find(|r| r["key"] == order.order_id)
            .unwrap_or_else(|| panic!("python did not see {}", order.order_id));
        assert_eq!(record["schema_id"], schema_id.0);
        // What Python decoded is the event we sent, field by field.
        let decoded: OrderPlaced = serde_json::from_value(record["value"].clone()).unwrap();
        assert_eq!(decoded, order);
        assert_eq!(record["headers"]["ce_id"], envelope.id.to_string());
        assert_eq!(record["headers"]["ce_type"], "com.eventline.commerce.OrderPlaced");
        assert_eq!(record["headers"]["ce_specversion"], "1.0");
        assert_eq!(record["headers"]["content-type"], "application/avro");
    }
}

#[tokio::test]
async fn our_codec_decodes_what_python_avro_serializer_produces() {
    let stack = Stack::start().await;
    let schema_file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../schemas/OrderPlaced.avsc");
    let output = run_python(
        PRODUCE,
        &[&stack.broker.bootstrap_servers(), &stack.registry.url, "orders", schema_file.to_str().unwrap(), "4"],
    )
    .await;
    let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
    // The same schema text registered by another client gets the same id under the same subject.
    let ours = stack.contracts.event("OrderPlaced").unwrap().schema_id;
    assert_eq!(printed["schema_ids"], serde_json::json!([ours.0]));

    let messages = read_topic(&stack.broker.bootstrap_servers(), "orders", 6, 4, Duration::from_secs(30)).await;
    let mut orders = Vec::new();
    for message in &messages {
        let framed = avro::unframe(message.payload().unwrap()).unwrap();
        let writer = stack.registry.client.schema_by_id(framed.schema_id).await.unwrap();
        let order: OrderPlaced = avro::decode(framed.body, &writer, None).unwrap();
        assert_eq!(message.key(), Some(order.order_id.as_bytes()));
        orders.push(order);
    }
    orders.sort_by(|a, b| a.order_id.cmp(&b.order_id));
    for (i, order) in orders.iter().enumerate() {
        assert_eq!(order.order_id, format!("py-order-{i}"));
        assert_eq!(
            order.lines,
            vec![OrderLine { sku: format!("SKU-{i}"), quantity: i as i32 + 1, unit_price_minor: 100 * (i as i64 + 1) }]
        );
        assert_eq!(order.placed_at.timestamp_millis(), 1_795_000_000_000 + i as i64);
        assert_eq!(order.currency, "EUR");
    }
}
