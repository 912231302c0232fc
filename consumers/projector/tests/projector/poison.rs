//! Events the projector cannot read go to its dead-letter topic; the partition moves on.

use std::time::Duration;

use eventline_common::kafka::consumer::dead_letter::header;
use eventline_e2e::read_topic;
use eventline_projector::domain::OrderStatus;
use rdkafka::message::{Headers as _, Message as _};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::events::{placed, recorded, shipped};
use crate::support::{Backend, Env, Running, WAIT};

fn header_value(message: &rdkafka::message::OwnedMessage, name: &str) -> Option<String> {
    let headers = message.headers()?;
    headers
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

#[tokio::test]
async fn garbage_and_unknown_schemas_are_dead_lettered_and_the_rest_is_applied() {
    let env = Env::start().await;
    let projector = Running::start(&env, Backend::Sqlite).await;
    let first = env
        .send(&recorded(placed("order-p", "cust-p", 100, 1)))
        .await;
    let producer: FutureProducer = env
        .stack
        .broker
        .kafka_settings()
        .client_config()
        .create()
        .unwrap();
    // Not Avro at all, then the wire format with a schema id the registry does not know.
    let unknown_schema = [0u8, 0, 0, 0x7f, 0x7f, 1, 2, 3];
    for value in [&b"not an event"[..], &unknown_schema[..]] {
        let record: FutureRecord<'_, str, [u8]> = FutureRecord::to(&first.topic)
            .partition(first.partition)
            .key("order-p")
            .payload(value);
        producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
    let last = env.send(&recorded(shipped("order-p"))).await;
    assert_eq!(
        (last.topic.as_str(), last.partition),
        (first.topic.as_str(), first.partition),
        "same key, same partition"
    );
    projector.caught_up(&[last]).await;

    let order = projector.store.order("order-p").await.unwrap().unwrap();
    assert_eq!(order.status(), OrderStatus::Shipped);
    let dead = read_topic(
        &env.stack.broker.bootstrap_servers(),
        &format!("{}.dlq", projector.group),
        1,
        2,
        WAIT,
    )
    .await;
    let offsets: Vec<String> = dead
        .iter()
        .filter_map(|m| header_value(m, header::ORIGINAL_OFFSET))
        .collect();
    assert_eq!(
        offsets,
        [
            (first.offset + 1).to_string(),
            (first.offset + 2).to_string()
        ]
    );
    for message in &dead {
        assert_eq!(
            header_value(message, header::ORIGINAL_TOPIC).as_deref(),
            Some(first.topic.as_str())
        );
        assert_eq!(
            header_value(message, header::GROUP).as_deref(),
            Some(projector.group.as_str())
        );
        assert!(message.payload().is_some());
    }
    projector.stop().await;
}
