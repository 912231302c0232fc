//! Health, readiness, metrics and the OpenAPI document.

use std::time::Duration;

use eventline_http_ingest::http::{routes, Problem};
use serde_json::{json, Value};

use crate::helpers::{order_event, order_id, send, spawn_app, Db};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_every_route_and_problem() {
    let app = spawn_app(Db::Sqlite).await;
    let reply = app.get("/openapi.json").await;
    assert_eq!(reply.status, 200);
    let doc = &reply.body;
    assert_eq!(doc["openapi"], "3.1.0");
    for route in routes() {
        let operation = &doc["paths"][route.path][route.method.to_lowercase()];
        assert!(operation.is_object(), "{} {} is not in the OpenAPI document", route.method, route.path);
    }
    let documented: Vec<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| ops.as_object().unwrap().keys().map(move |m| (m.to_uppercase(), path.clone())))
        .collect();
    assert_eq!(documented.len(), routes().len(), "documented: {documented:?}");
    for (method, path) in &documented {
        let request = app.http.request(method.parse().unwrap(), format!("{}{path}", app.base)).json(&json!({}));
        let status = send(request).await.status;
        assert!(status != 404 && status != 405, "{method} {path} is documented but not served ({status})");
    }
    let problems: Vec<Value> = Problem::ALL.iter().map(|p| json!(p.uri())).collect();
    assert_eq!(doc["components"]["schemas"]["Problem"]["properties"]["type"]["enum"], json!(problems));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_events_validation_failures_and_publish_latency() {
    let app = spawn_app(Db::Sqlite).await;
    let (event, _) = order_event(&order_id());
    assert_eq!(app.publish(&event).await.status, 201);
    let mut invalid = event.clone();
    invalid["data"]["total_minor"] = json!("x");
    assert_eq!(app.publish_batch(&[event, invalid]).await.status, 207);
    let text = app.get("/metrics").await.text;
    for line in [
        "eventline_ingest_requests_total{route=\"/v1/events\",status_class=\"2xx\"} 1",
        "eventline_ingest_requests_total{route=\"/v1/events:batch\",status_class=\"2xx\"} 1",
        "eventline_ingest_events_total{outcome=\"published\"} 2",
        "eventline_ingest_events_total{outcome=\"invalid\"} 1",
        "eventline_ingest_events_total{outcome=\"unavailable\"} 0",
        "eventline_ingest_validation_failures_total 1",
        "eventline_ingest_publish_duration_seconds_count 2",
    ] {
        assert!(text.lines().any(|l| l == line), "missing `{line}` in\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_only_while_the_broker_answers() {
    let mut app = spawn_app(Db::Sqlite).await;
    assert_eq!(app.get("/health/live").await.status, 200);
    let ready = app.get("/health/ready").await;
    assert_eq!(ready.status, 200, "{ready:#?}");
    app.broker.stop().await;
    let not_ready = app.get("/health/ready").await;
    assert_eq!(not_ready.status, 503, "{not_ready:#?}");
    assert!(not_ready.body["reason"].as_str().unwrap().contains("Kafka"), "{not_ready:#?}");
    assert_eq!(app.get("/health/live").await.status, 200, "live all the same");
    app.broker.resume().await;
    eventline_testkit::eventually("ready again", Duration::from_secs(30), || async {
        (app.get("/health/ready").await.status == 200).then_some(())
    })
    .await;
}
