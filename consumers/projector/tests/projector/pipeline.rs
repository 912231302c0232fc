//! Events published to Kafka → read model rows, equal to the in-memory fold of the same events.

use eventline_projector::domain::{OrderStatus, ReadModel, Recorded};
use proptest::prelude::*;
use proptest::strategy::ValueTree as _;

use crate::events::{
    self, authorized, cancelled, captured, email_changed, placed, recorded, refunded, registered, shipped, Seed,
};
use crate::support::{Backend, Env, Running};

/// A day in the shop, including a payment before its order and a redelivered event.
fn a_day() -> Vec<Recorded> {
    let early_capture = recorded(captured("pay-3", "order-3", 300));
    let placed_1 = recorded(placed("order-1", "cust-1", 1_000, 10));
    let mut events = vec![
        recorded(registered("cust-1", "ada@example.com")),
        placed_1.clone(),
        recorded(authorized("pay-1", "order-1", 1_000)),
        recorded(captured("pay-1", "order-1", 1_000)),
        recorded(shipped("order-1")),
        recorded(refunded("pay-1", "order-1", 250)),
        recorded(placed("order-2", "cust-1", 400, 20)),
        recorded(cancelled("order-2")),
        early_capture.clone(),
        recorded(placed("order-3", "cust-2", 300, 30)),
        recorded(registered("cust-2", "bob@example.com")),
        recorded(email_changed("cust-1", "ada@lovelace.example")),
    ];
    events.push(placed_1); // redelivered with the same event id
    events.push(early_capture);
    events
}

async fn a_day_is_projected(backend: Backend) {
    let env = Env::start().await;
    let projector = Running::start(&env, backend).await;
    let events = a_day();
    let positions = env.send_all(&events).await;
    projector.caught_up(&positions).await;

    let model = projector.store.snapshot().await.unwrap();
    assert_eq!(model, ReadModel::fold(&events));
    assert_eq!(model.orders["order-1"].status(), OrderStatus::Shipped);
    assert_eq!(model.orders["order-2"].status(), OrderStatus::Cancelled);
    assert_eq!(model.orders["order-3"].status(), OrderStatus::Paid);
    let ada = &model.customers["cust-1"];
    assert_eq!((ada.order_count, ada.lifetime_value_minor), (2, 750));
    assert_eq!(ada.email.as_deref(), Some("ada@lovelace.example"));
    assert_eq!(model.customers["cust-2"].lifetime_value_minor, 300);
    projector.stop().await;
}

#[tokio::test]
async fn a_day_is_projected_on_sqlite() {
    a_day_is_projected(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_day_is_projected_on_postgres() {
    a_day_is_projected(Backend::Postgres).await;
}

/// Random streams (with redeliveries) published one after another to one running projector:
/// after each, the rows equal the fold of everything published so far. `PIPELINE_SEED=<seed>`
/// replays the streams of a failed run.
async fn random_streams_are_projected(backend: Backend, cases: u32) {
    let seed = Seed::from_env("PIPELINE_SEED", &format!("pipeline {backend:?}"));
    let env = Env::start().await;
    let projector = Running::start(&env, backend).await;
    let mut runner = seed.runner();
    let mut all = Vec::new();
    for case in 0..cases {
        let events = events::stream(format!("case{case}"), 30).new_tree(&mut runner).unwrap().current();
        let positions = env.send_all(&events).await;
        all.extend(events);
        projector.caught_up(&positions).await;
        assert_eq!(projector.store.snapshot().await.unwrap(), ReadModel::fold(&all), "case {case}, seed {seed}");
    }
    projector.stop().await;
}

#[tokio::test]
async fn random_streams_are_projected_on_sqlite() {
    random_streams_are_projected(Backend::Sqlite, 12).await;
}

#[tokio::test]
async fn random_streams_are_projected_on_postgres() {
    random_streams_are_projected(Backend::Postgres, 12).await;
}
