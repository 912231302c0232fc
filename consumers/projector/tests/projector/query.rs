//! The query API over a projected read model.

use serde_json::Value;

use crate::events::{captured, placed, recorded, registered, shipped};
use crate::support::{Backend, Env, Running};

async fn shop(backend: Backend) -> (Env, Running) {
    let env = Env::start().await;
    let projector = Running::start(&env, backend).await;
    let events = vec![
        recorded(registered("cust-1", "ada@example.com")),
        recorded(placed("order-a", "cust-1", 100, 1_000)),
        recorded(placed("order-b", "cust-1", 200, 2_000)),
        recorded(placed("order-c", "cust-1", 300, 3_000)),
        recorded(captured("pay-b", "order-b", 200)),
        recorded(captured("pay-c", "order-c", 300)),
        recorded(shipped("order-c")),
        recorded(captured("pay-p", "order-pending", 5)),
    ];
    let positions = env.send_all(&events).await;
    projector.caught_up(&positions).await;
    (env, projector)
}

fn ids(page: &Value) -> Vec<&str> {
    page["orders"].as_array().unwrap().iter().map(|o| o["order_id"].as_str().unwrap()).collect()
}

async fn the_api_answers(backend: Backend) {
    let (_env, api) = shop(backend).await;

    let (status, order) = api.get("/v1/orders/order-b").await;
    assert_eq!(status, 200, "{order}");
    assert_eq!(order["status"], "paid");
    assert_eq!(order["customer_id"], "cust-1");
    assert_eq!(order["captured_minor"], 200);
    assert_eq!(order["payments"][0]["payment_id"], "pay-b");
    assert_eq!(order["payments"][0]["status"], "captured");

    let (status, customer) = api.get("/v1/customers/cust-1").await;
    assert_eq!(status, 200, "{customer}");
    assert_eq!(customer["email"], "ada@example.com");
    assert_eq!(customer["order_count"], 3);
    assert_eq!(customer["lifetime_value_minor"], 500);

    // Pages of two (the test default), newest first, then the rest through the cursor.
    let (status, first) = api.get("/v1/customers/cust-1/orders").await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(ids(&first), ["order-c", "order-b"]);
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, second) = api.get(&format!("/v1/customers/cust-1/orders?cursor={cursor}")).await;
    assert_eq!(ids(&second), ["order-a"]);
    assert!(second.get("next_cursor").is_none(), "{second}");

    let (_, paid) = api.get("/v1/customers/cust-1/orders?status=paid&limit=10").await;
    assert_eq!(ids(&paid), ["order-b"]);
    let (_, shipped) = api.get("/v1/customers/cust-1/orders?status=shipped").await;
    assert_eq!(ids(&shipped), ["order-c"]);

    let (status, missing) = api.get("/v1/orders/order-zzz").await;
    assert_eq!(status, 404);
    assert_eq!(missing["type"], "urn:eventline:problem:not-found");
    assert_eq!(missing["detail"], "no order order-zzz");
    let (status, pending) = api.get("/v1/orders/order-pending").await;
    assert_eq!(status, 404, "an order with a payment but no OrderPlaced is not visible: {pending}");
    let (status, _) = api.get("/v1/customers/nobody").await;
    assert_eq!(status, 404);

    let (status, bad) = api.get("/v1/customers/cust-1/orders?limit=0").await;
    assert_eq!(status, 400);
    assert_eq!(bad["parameter"], "limit");
    let (status, bad) = api.get("/v1/customers/cust-1/orders?status=lost").await;
    assert_eq!(status, 400);
    assert_eq!(bad["parameter"], "status");
    let (status, bad) = api.get("/v1/orders/order-a?after=orders-3-4").await;
    assert_eq!(status, 400);
    assert_eq!(bad["parameter"], "after");

    let health = api.http.get(format!("{}/health/ready", api.url)).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let metrics = api.http.get(format!("{}/metrics", api.url)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("eventline_projector_events_total{outcome=\"applied\"} 8"), "{metrics}");
    api.stop().await;
}

#[tokio::test]
async fn the_api_answers_on_sqlite() {
    the_api_answers(Backend::Sqlite).await;
}

#[tokio::test]
async fn the_api_answers_on_postgres() {
    the_api_answers(Backend::Postgres).await;
}
