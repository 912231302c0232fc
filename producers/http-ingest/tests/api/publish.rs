//! Publishing over HTTP lands every event on its topic exactly as sent: keyed by the catalog's
//! key field, Avro in Confluent framing, CloudEvents headers, the caller's trace.

use eventline_common::envelope::TraceParent;
use serde_json::{json, Value};

use crate::helpers::{header, order_event, order_id, send, spawn_app, Db};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_is_answered_with_its_position_after_the_broker_acknowledged() {
    let app = spawn_app(Db::Postgres).await;
    let (event, order) = order_event(&order_id());
    let incoming = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
    let reply = send(
        app.post("/v1/events")
            .header("traceparent", incoming.to_string())
            .header("x-correlation-id", "checkout-7")
            .json(&event),
    )
    .await;
    assert_eq!(reply.status, 201, "{reply:#?}");
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!((reply.body["type"].as_str(), reply.body["topic"].as_str()), (Some("OrderPlaced"), Some("orders")));
    let id = reply.body["id"].as_str().expect("an id");
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");

    let message = app.message_at(&reply.body).await;
    use rdkafka::message::Message as _;
    assert_eq!(message.key(), Some(order.order_id.as_bytes()));
    assert_eq!(app.decode_order(&message).await, order);
    assert_eq!(header(&message, "ce_specversion").as_deref(), Some("1.0"));
    assert_eq!(header(&message, "ce_id").as_deref(), Some(id));
    assert_eq!(header(&message, "ce_type").as_deref(), Some("com.eventline.commerce.OrderPlaced"));
    assert_eq!(header(&message, "ce_source").as_deref(), Some("/tests/checkout"));
    assert_eq!(header(&message, "content-type").as_deref(), Some("application/avro"));
    assert_eq!(header(&message, "correlation_id").as_deref(), Some("checkout-7"));
    let traceparent = TraceParent::parse(&header(&message, "traceparent").expect("traceparent")).unwrap();
    assert_eq!(traceparent.trace_id, incoming.trace_id, "the event continues the caller's trace");
    assert_ne!(traceparent.span_id, incoming.span_id);
    assert_eq!(app.messages("orders").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_a_trace_starts_one_and_a_source_defaults_to_the_service() {
    let app = spawn_app(Db::Sqlite).await;
    let (mut event, _) = order_event(&order_id());
    event.as_object_mut().unwrap().remove("source");
    let reply = app.publish(&event).await;
    assert_eq!(reply.status, 201, "{reply:#?}");
    let message = app.message_at(&reply.body).await;
    assert!(TraceParent::parse(&header(&message, "traceparent").expect("a traceparent")).is_ok());
    assert_eq!(header(&message, "ce_source").as_deref(), Some("/ingest/http"));
    assert_eq!(header(&message, "correlation_id"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_batch_and_an_ndjson_batch_arrive_exactly_as_sent_in_order() {
    let app = spawn_app(Db::Postgres).await;
    let sent: Vec<(Value, _)> = (0..30).map(|_| order_event(&order_id())).collect();
    let reply = app.publish_batch(&sent[..20].iter().map(|(e, _)| e.clone()).collect::<Vec<_>>()).await;
    assert_eq!(reply.status, 200, "{reply:#?}");
    assert_eq!((reply.body["published"].as_u64(), reply.body["failed"].as_u64()), (Some(20), Some(0)));
    let ndjson: String = sent[20..].iter().map(|(e, _)| format!("{e}\n")).collect();
    let second = send(app.post("/v1/events:batch").header("content-type", "application/x-ndjson").body(ndjson)).await;
    assert_eq!(second.status, 200, "{second:#?}");

    let mut results: Vec<Value> = reply.body["results"].as_array().unwrap().clone();
    results.extend(second.body["results"].as_array().unwrap().iter().cloned());
    assert_eq!(results.len(), 30);
    for (i, result) in results.iter().enumerate() {
        assert_eq!(result["index"], if i < 20 { i } else { i - 20 }, "{result}");
        assert_eq!(result["status"], 201, "{result}");
        if i >= 20 {
            assert_eq!(result["line"], i - 19, "NDJSON results carry their line: {result}");
        }
    }
    let messages = app.consume("orders", 30).await;
    use rdkafka::message::Message as _;
    for (i, (_, order)) in sent.iter().enumerate() {
        let message = messages
            .iter()
            .find(|m| m.key() == Some(order.order_id.as_bytes()))
            .unwrap_or_else(|| panic!("{} is not on the topic", order.order_id));
        assert_eq!(&app.decode_order(message).await, order);
        let result = &results[i];
        assert_eq!(header(message, "ce_id").as_deref(), result["id"].as_str());
        assert_eq!(
            (message.partition(), message.offset()),
            (result["partition"].as_i64().unwrap() as i32, result["offset"].as_i64().unwrap())
        );
    }
    // Events with one key keep their order: offsets grow with the input order per partition.
    for pair in results.windows(2) {
        if pair[0]["partition"] == pair[1]["partition"] {
            assert!(pair[0]["offset"].as_i64() < pair[1]["offset"].as_i64(), "{pair:?}");
        }
    }
    assert_eq!(app.messages("orders").await, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_events_of_a_batch_are_published_when_a_neighbour_is_invalid() {
    let app = spawn_app(Db::Sqlite).await;
    let (first, _) = order_event(&order_id());
    let (mut invalid, _) = order_event(&order_id());
    invalid["data"]["total_minor"] = json!("a lot");
    invalid["data"]["lines"][1]["quantity"] = json!(1.5);
    let unknown = json!({"type": "OrderTeleported", "data": {}});
    let (last, _) = order_event(&order_id());
    let payment = json!({"type": "PaymentFailed", "data": {"order_id": "o-9", "payment_id": "p-1", "reason": "card declined",
                                                                "failed_at": "2026-11-23T10:00:00Z"}});
    let reply = app.publish_batch(&[first, invalid, unknown, last, payment]).await;
    assert_eq!(reply.status, 207, "{reply:#?}");
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let results = reply.body["results"].as_array().unwrap();
    let statuses: Vec<u64> = results.iter().map(|r| r["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, [201, 422, 422, 201, 201], "{reply:#?}");
    assert_eq!(results[1]["problem"], "urn:eventline:problem:invalid-event");
    let paths: Vec<&str> =
        results[1]["errors"].as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["$.data.lines[1].quantity", "$.data.total_minor"], "{results:#?}");
    assert!(
        results[1]["errors"][1]["message"].as_str().unwrap().contains("long"),
        "the expected type is named: {results:#?}"
    );
    assert_eq!(results[2]["problem"], "urn:eventline:problem:unknown-event-type");
    assert!(results[2]["detail"].as_str().unwrap().contains("OrderTeleported"));
    assert_eq!(app.messages("orders").await, 2);
    assert_eq!(app.messages("payments").await, 1);
    assert_eq!((results[4]["type"].as_str(), results[4]["topic"].as_str()), (Some("PaymentFailed"), Some("payments")));
}
