//! Read-your-writes: a query carrying the position of a write waits until the read model has
//! applied it, and says so when it has not in time.

use std::time::Duration;

use eventline_projector::http::POSITION_HEADER;
use tokio_util::sync::CancellationToken;

use crate::events::{placed, recorded};
use crate::support::{settings, Backend, Env, Running, TestDb};

#[tokio::test]
async fn a_query_after_a_position_waits_until_it_is_applied() {
    let env = Env::start().await;
    let (_guard, db) = TestDb::create(Backend::Sqlite).await;
    let app = env.projector(settings(), db).await;
    // The query API serves before the consumer runs, so the order cannot be there yet.
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", api.local_addr().unwrap());
    let token = CancellationToken::new();
    tokio::spawn(eventline_common::http::serve(api, app.router(), token.clone()));
    let position = env.send(&recorded(placed("order-ryw", "cust-ryw", 100, 1))).await;
    let after = format!("{}:{}:{}", position.topic, position.partition, position.offset);
    let (status, _) = get(&format!("{url}/v1/orders/order-ryw")).await;
    assert_eq!(status, 404, "not applied before the consumer runs");

    let query = tokio::spawn(get_owned(format!("{url}/v1/orders/order-ryw?after={after}")));
    let running = tokio::spawn(app.run(token.clone()));
    let (status, order) = query.await.unwrap();
    assert_eq!(status, 200, "{order}");
    assert_eq!(order["order_id"], "order-ryw");
    token.cancel();
    running.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_position_not_reached_in_time_is_a_412_saying_so() {
    let env = Env::start().await;
    let mut settings = settings();
    settings.wait_timeout = Duration::from_millis(300);
    let api = Running::start_with(&env, Backend::Sqlite, settings).await;
    let response = api
        .http
        .get(format!("{}/v1/orders/order-x", api.url))
        .header(POSITION_HEADER, "orders:0:1000000")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 412);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["type"], "urn:eventline:problem:not-caught-up");
    assert_eq!(body["position"], serde_json::json!({"topic": "orders", "partition": 0, "offset": 1_000_000}));
    api.stop().await;
}

async fn get(url: &str) -> (u16, serde_json::Value) {
    let response = reqwest::get(url).await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn get_owned(url: String) -> (u16, serde_json::Value) {
    get(&url).await
}
