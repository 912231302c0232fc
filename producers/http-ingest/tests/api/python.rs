//! Software nobody here wrote reads what ingest published: Python confluent-kafka's
//! AvroDeserializer with its own schema-registry client.

use eventline_common::events::OrderPlaced;
use eventline_testkit::run_python;
use serde_json::Value;

use crate::helpers::{order_event, order_id, spawn_app, Db};

const CONSUME: &str = include_str!("../../../../tests/python/consume_avro.py");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_avro_deserializer_decodes_what_ingest_published() {
    let app = spawn_app(Db::Sqlite).await;
    let sent: Vec<(Value, OrderPlaced)> = (0..5).map(|_| order_event(&order_id())).collect();
    let reply = app.publish_batch(&sent.iter().map(|(e, _)| e.clone()).collect::<Vec<_>>()).await;
    assert_eq!(reply.status, 200, "{reply:#?}");

    let output = run_python(CONSUME, &[&app.broker.bootstrap_servers(), &app.registry.url, "orders", "6", "5"]).await;
    let records: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(records.len(), 5, "python read {records:#?}");
    for ((_, order), result) in sent.iter().zip(reply.body["results"].as_array().unwrap()) {
        let record = records
            .iter()
            .find(|r| r["key"] == order.order_id.as_str())
            .unwrap_or_else(|| panic!("python did not see {}", order.order_id));
        let decoded: OrderPlaced = serde_json::from_value(record["value"].clone()).unwrap();
        assert_eq!(&decoded, order);
        assert_eq!((&record["partition"], &record["offset"]), (&result["partition"], &result["offset"]));
        assert_eq!(record["headers"]["ce_id"], result["id"]);
        assert_eq!(record["headers"]["ce_type"], "com.eventline.commerce.OrderPlaced");
        assert_eq!(record["headers"]["content-type"], "application/avro");
        assert!(record["headers"]["traceparent"].as_str().is_some_and(|t| t.starts_with("00-")));
    }
}
