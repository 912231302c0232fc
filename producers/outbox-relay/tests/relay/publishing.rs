//! Rows written by an upstream transaction arrive on their topics as the events they describe.

use std::collections::HashSet;
use std::time::Duration;

use eventline_common::avro;
use eventline_outbox_relay::metrics::{LAG_ROWS, PUBLISHED_TOTAL};
use eventline_outbox_relay::OutboxRelaySettings;
use eventline_testkit::eventually;
use serde_json::{json, Value as Json};

use crate::support::{ids_per_aggregate, ids_per_key, read_topic, Harness, Received, StoredRow};
use crate::upstream::{place_order, ship_order, Line, SHOP_ORDERS_DDL};

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_written_with_business_changes_arrive_keyed_in_order_with_their_ids_and_data() {
    let harness = Harness::with_outbox().await;
    let pool = &harness.pool;
    sqlx::query(SHOP_ORDERS_DDL).execute(pool).await.unwrap();
    for n in 1..=4 {
        let order = format!("o-{n}");
        let lines = [
            Line { sku: "BOOK-1", quantity: n, unit_price_minor: 1250 },
            Line { sku: "PEN", quantity: 1, unit_price_minor: 99 },
        ];
        place_order(pool, &order, "c-7", &lines).await.unwrap();
        ship_order(pool, &order, "DHL").await.unwrap();
    }
    sqlx::raw_sql(include_str!("../../examples/place_order.sql")).execute(pool).await.unwrap();
    sqlx::query(
        "INSERT INTO eventline_outbox (event_type, aggregate_id, payload, subject, traceparent, correlation_id, occurred_at)
         VALUES ('com.eventline.commerce.CustomerRegistered', 'c-7', $1::jsonb, 'signup', $2, 'req-42', '2026-11-23T09:00:00.250Z')",
    )
    .bind(json!({"customer_id": "c-7", "email": "ada@example.com", "name": "Ada", "registered_at": 1_795_424_400_000_i64}).to_string())
    .bind(TRACEPARENT)
    .execute(pool)
    .await
    .unwrap();

    // create_table on an existing table changes nothing.
    let settings = OutboxRelaySettings { create_table: true, source: "/shop/outbox".into(), ..harness.settings() };
    let built = harness.build(settings).await;
    let router = built.relay.router();
    let relay = built.run();
    harness.settled("eventline_outbox", Duration::from_secs(30)).await;
    eventually("the lag gauge to reach 0", Duration::from_secs(10), || async {
        (relay.metric(LAG_ROWS, &[]) == 0.0).then_some(())
    })
    .await;
    let metrics_text = scrape(router).await;
    relay.stop().await;

    let rows = harness.rows("eventline_outbox").await;
    assert_eq!(rows.len(), 10);
    assert!(rows.iter().all(|r| r.published && !r.rejected && r.last_error.is_none()), "{rows:#?}");
    assert!(metrics_text.contains(&format!("{PUBLISHED_TOTAL} 10")), "{metrics_text}");

    let orders = read_topic(&harness.kafka(), "orders").await;
    let customers = read_topic(&harness.kafka(), "customers").await;
    assert_eq!((orders.len(), customers.len()), (9, 1), "each event exactly once");
    for row in &rows {
        let topic = if row.aggregate_id.starts_with('c') { &customers } else { &orders };
        let message = topic.iter().find(|m| m.envelope.id.to_string() == row.event_id).unwrap();
        check_message(&harness, row, message);
    }
    let order_rows = rows.iter().filter(|r| r.aggregate_id.starts_with('o'));
    assert_eq!(ids_per_key(&orders), ids_per_aggregate(order_rows), "per-order order on the topic");

    let customer = &customers[0];
    assert_eq!(customer.envelope.source, "/shop/outbox", "rows without a source get outbox_relay.source");
    assert_eq!(customer.envelope.subject.as_deref(), Some("signup"));
    assert_eq!(customer.envelope.correlation_id.as_deref(), Some("req-42"));
    assert_eq!(customer.envelope.traceparent.unwrap().trace_id, 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736);
    assert_eq!(customer.envelope.time.to_rfc3339(), "2026-11-23T09:00:00.250+00:00");
    let sql_example = orders.iter().find(|m| m.key == "o-sql-1").unwrap();
    assert_eq!(sql_example.envelope.source, "urn:shop:checkout");
    let sources: HashSet<&str> = orders.iter().map(|m| m.envelope.source.as_str()).collect();
    assert_eq!(sources, HashSet::from(["urn:shop:orders", "urn:shop:checkout"]));
}

/// Key, CloudEvents headers, data and the recorded position of one row's message.
fn check_message(harness: &Harness, row: &StoredRow, message: &Received) {
    let registered = harness.stack.contracts.event(&row.event_type).unwrap();
    assert_eq!(message.key, row.aggregate_id);
    assert_eq!(message.envelope.event_type, registered.spec.full_name);
    assert_eq!(message.envelope.time.timestamp_millis(), row.occurred_ms);
    if let Some(source) = &row.source {
        assert_eq!(&message.envelope.source, source);
    }
    assert_eq!(row.kafka_topic.as_deref(), Some(registered.spec.topic.as_str()));
    assert_eq!((row.kafka_partition, row.kafka_offset), (Some(message.partition), Some(message.offset)));

    let framed = avro::unframe(&message.value).unwrap();
    assert_eq!(framed.schema_id, registered.schema_id);
    let decoded = Json::try_from(avro::decode_value(framed.body, &registered.spec.schema, None).unwrap()).unwrap();
    let mut expected = row.payload.clone();
    if row.aggregate_id == "o-sql-1" {
        expected["placed_at"] = json!(1_795_428_000_000_i64); // the SQL example writes it as RFC 3339
    }
    let Json::Object(fields) = decoded else { panic!("not a record: {decoded}") };
    for (name, value) in &fields {
        assert_eq!(value, expected.get(name).unwrap_or(&Json::Null), "{} field {name}", row.event_id);
    }
    assert!(expected.as_object().unwrap().keys().all(|k| fields.contains_key(k)), "{expected} vs {fields:?}");
}

async fn scrape(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let token = tokio_util::sync::CancellationToken::new();
    tokio::spawn(eventline_common::http::serve(listener, router, token.clone()));
    let ready = reqwest::get(format!("{url}/health/ready")).await.unwrap();
    assert_eq!(ready.status(), 200, "ready while the upstream database answers");
    let text = reqwest::get(format!("{url}/metrics")).await.unwrap().text().await.unwrap();
    token.cancel();
    text
}
