//! `eventline publish`: NDJSON in, events on the topics, rejected lines named with reasons.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use eventline_cli::commands::publish::{publish_lines, DEFAULT_SOURCE};
use eventline_common::envelope::Envelope;
use eventline_common::kafka::producer::{EventProducer, ProducerSettings};
use eventline_common::publish::{Origin, Publisher};
use eventline_e2e::{read_topic, Stack};
use rdkafka::message::Message;
use serde_json::json;

fn order_line(i: usize) -> String {
    json!({
        "type": "OrderPlaced",
        "id": format!("00000000-0000-4000-8000-{i:012}"),
        "data": {"order_id": format!("o-{}", i % 7), "customer_id": "c-1", "currency": "EUR", "total_minor": i,
                 "lines": [{"sku": "A", "quantity": 1, "unit_price_minor": i}], "placed_at": 1_795_000_000_000u64 + i as u64}
    })
    .to_string()
}

fn origin() -> Origin {
    Origin { source: DEFAULT_SOURCE.into(), traceparent: None, correlation_id: None }
}

#[tokio::test]
async fn valid_lines_are_published_in_order_and_bad_lines_are_named() {
    let stack = Stack::start().await;
    let publisher = Publisher::new(
        EventProducer::new(&stack.broker.kafka_settings(), &ProducerSettings::default()).unwrap(),
        std::sync::Arc::new(stack.contracts.clone()),
    );
    let mut lines: Vec<String> = (0..300).map(order_line).collect();
    lines[2] = "{not json".into();
    lines[9] = json!({"type": "OrderTeleported", "data": {}}).to_string();
    lines[19] = order_line(19).replace("\"quantity\":1", "\"quantity\":\"one\"");
    lines[29] = String::new();
    let input = lines.join("\n");
    let summary = publish_lines(
        input.as_bytes(),
        &stack.contracts,
        Some(&publisher),
        &origin(),
        16,
        None,
        std::future::pending(),
    )
    .await
    .unwrap();
    assert_eq!(summary.lines, 300);
    assert_eq!(summary.published, 296, "{summary:?}");
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);
    let rejected: Vec<(u64, String)> = summary.rejected.iter().map(|r| (r.line, r.errors[0].path.clone())).collect();
    assert_eq!(rejected, [(3, "$".into()), (10, "$.type".into()), (20, "$.data.lines[0].quantity".into())]);
    assert!(summary.rejected[0].errors[0].message.contains("not valid JSON"));

    let messages = read_topic(&stack.broker.bootstrap_servers(), "orders", 6, 296, Duration::from_secs(30)).await;
    // Per key, the events are on the topic in the order of the file.
    let mut last_seen: std::collections::HashMap<Vec<u8>, (i32, i64, u128)> = Default::default();
    let mut by_offset = messages.clone();
    by_offset.sort_by_key(|m| (m.partition(), m.offset()));
    for message in &by_offset {
        let envelope = Envelope::from_headers(message.headers().unwrap()).unwrap();
        assert_eq!(envelope.source, DEFAULT_SOURCE);
        let sequence = envelope.id.as_u128() & 0xffff_ffff_ffff;
        let key = message.key().unwrap().to_vec();
        if let Some((partition, _, previous)) = last_seen.get(&key) {
            assert_eq!(*partition, message.partition(), "one key, one partition");
            assert!(
                sequence > *previous,
                "key {:?}: line {sequence} came after line {previous}",
                String::from_utf8_lossy(&key)
            );
        }
        last_seen.insert(key, (message.partition(), message.offset(), sequence));
    }
    assert_eq!(last_seen.len(), 7);
}

#[tokio::test]
async fn a_dry_run_validates_everything_and_publishes_nothing() {
    let stack = Stack::start().await;
    let input: String = (0..50).map(order_line).collect::<Vec<_>>().join("\n");
    let summary = publish_lines(input.as_bytes(), &stack.contracts, None, &origin(), 16, None, std::future::pending())
        .await
        .unwrap();
    assert_eq!((summary.validated, summary.published), (50, 0));
    assert!(summary.succeeded());
    let watermarks = {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let consumer: BaseConsumer = stack.broker.kafka_settings().client_config().create().unwrap();
        (0..6).map(|p| consumer.fetch_watermarks("orders", p, Duration::from_secs(5)).unwrap().1).sum::<i64>()
    };
    assert_eq!(watermarks, 0, "a dry run must not publish");
}

#[tokio::test]
async fn an_interrupt_stops_reading_and_says_so() {
    let stack = Stack::start().await;
    let input: String = (0..50).map(order_line).collect::<Vec<_>>().join("\n");
    let summary = publish_lines(input.as_bytes(), &stack.contracts, None, &origin(), 16, None, async {}).await.unwrap();
    assert!(summary.interrupted);
    assert!(!summary.succeeded());
    assert_eq!(summary.lines, 0);
}
