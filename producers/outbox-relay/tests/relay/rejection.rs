//! Rows that can never be published are rejected with a reason an operator can act on, and the
//! rows after them, of the same aggregate too, still flow.

use std::time::Duration;

use eventline_outbox_relay::metrics::REJECTED_TOTAL;
use serde_json::json;

use crate::support::{read_topic, Harness};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_rows_are_rejected_with_the_reason_and_do_not_stop_later_rows() {
    let harness = Harness::with_outbox().await;
    let shipped = |order: &str, carrier: &str| json!({"order_id": order, "carrier": carrier, "shipped_at": 1_795_428_000_000_i64});
    let rows = [
        ("OrderShipped", "o-1", shipped("o-1", "first")),
        ("OrderTeleported", "o-1", shipped("o-1", "unknown type")),
        ("OrderShipped", "o-1", json!({"order_id": "o-1", "carrier": 42, "shipped_at": "yesterday"})),
        ("OrderShipped", "order-1", shipped("o-1", "key mismatch")),
        ("OrderShipped", "o-1", shipped("o-1", "last")),
        ("OrderShipped", "o-2", shipped("o-2", "other order")),
    ];
    for (event_type, aggregate, payload) in &rows {
        sqlx::query("INSERT INTO eventline_outbox (event_type, aggregate_id, payload) VALUES ($1, $2, $3::jsonb)")
            .bind(event_type)
            .bind(aggregate)
            .bind(payload.to_string())
            .execute(&harness.pool)
            .await
            .unwrap();
    }
    let relay = harness.start_relay(harness.settings()).await;
    harness.settled("eventline_outbox", Duration::from_secs(30)).await;
    let rejected_metric = relay.metric(REJECTED_TOTAL, &[("reason", "invalid")]);
    relay.stop().await;

    let stored = harness.rows("eventline_outbox").await;
    let state: Vec<(bool, bool)> = stored.iter().map(|r| (r.published, r.rejected)).collect();
    let (published, rejected) = ((true, false), (false, true));
    assert_eq!(state, [published, rejected, rejected, rejected, published, published]);
    let errors: Vec<&str> = stored.iter().filter_map(|r| r.last_error.as_deref()).collect();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert_eq!(errors[0], "event_type: unknown event type `OrderTeleported`");
    assert!(errors[1].contains("payload.carrier: ") && errors[1].contains("payload.shipped_at: "), "{}", errors[1]);
    assert!(errors[2].contains("aggregate_id `order-1`") && errors[2].contains("payload.order_id"), "{}", errors[2]);
    assert_eq!(rejected_metric, 3.0);

    let orders = read_topic(&harness.kafka(), "orders").await;
    let ids: Vec<String> = orders.iter().filter(|m| m.key == "o-1").map(|m| m.envelope.id.to_string()).collect();
    assert_eq!(ids, [stored[0].event_id.clone(), stored[4].event_id.clone()], "o-1's valid rows, in order");
    assert_eq!(orders.len(), 3, "nothing else was published");
}
