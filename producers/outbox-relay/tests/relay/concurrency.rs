//! Several relays over one table: every row published once, each aggregate in order.

use std::collections::HashSet;
use std::time::Duration;

use eventline_outbox_relay::metrics::PUBLISHED_TOTAL;
use eventline_outbox_relay::OutboxRelaySettings;

use crate::support::{ids_per_aggregate, ids_per_key, read_topic, Harness};

const TABLE: &str = "shop.outbox";
const ROWS: i64 = 3_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_publish_every_row_once_in_order_per_aggregate() {
    let harness = Harness::start().await;
    sqlx::query("CREATE SCHEMA shop").execute(&harness.pool).await.unwrap();
    let settings = OutboxRelaySettings {
        table: TABLE.into(),
        channel: "shop_events".into(),
        create_table: true,
        batch_size: 50,
        ..harness.settings()
    };
    // Both create the table at once (the DDL is serialized by an advisory lock).
    let (one, two) = tokio::join!(harness.build(settings.clone()), harness.build(settings));
    harness.insert_shipments(TABLE, ROWS, 60).await;
    let (one, two) = (one.run(), two.run());
    harness.settled(TABLE, Duration::from_secs(90)).await;
    let by_one = one.metric(PUBLISHED_TOTAL, &[]);
    let by_two = two.metric(PUBLISHED_TOTAL, &[]);
    one.stop().await;
    two.stop().await;

    eprintln!("relay one published {by_one} rows, relay two {by_two}");
    assert_eq!(by_one + by_two, ROWS as f64);
    assert!(by_one > 0.0 && by_two > 0.0, "both relays took part: {by_one} and {by_two}");

    let rows = harness.rows(TABLE).await;
    assert!(rows.iter().all(|r| r.published), "every row marked published");
    let messages = read_topic(&harness.kafka(), "orders").await;
    let ids: HashSet<String> = messages.iter().map(|m| m.envelope.id.to_string()).collect();
    assert_eq!(messages.len(), rows.len(), "no event published twice");
    assert_eq!(ids, rows.iter().map(|r| r.event_id.clone()).collect::<HashSet<_>>());
    assert_eq!(ids_per_key(&messages), ids_per_aggregate(&rows), "each aggregate in row order");
}
