//! The SQL store against the in-memory fold, without a broker: random event streams applied in
//! random batches give the rows the fold gives, on SQLite and PostgreSQL.

use eventline_common::kafka::consumer::PartitionOffset;
use eventline_projector::domain::{ReadModel, Recorded};
use eventline_projector::store::Store;
use proptest::prelude::*;
use proptest::strategy::ValueTree as _;
use proptest::test_runner::{Config, TestRunner};

use crate::events::{self, captured, placed, recorded, refunded, registered};
use crate::support::{Backend, TestDb};

async fn apply_in_batches(store: &Store, events: &[Recorded], sizes: &[usize]) {
    let mut rest = events;
    let mut offset = 0;
    for size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (batch, tail) = rest.split_at((*size).clamp(1, rest.len()));
        offset += batch.len() as i64;
        let position = PartitionOffset {
            topic: "orders".into(),
            partition: 0,
            next_offset: offset,
        };
        store
            .apply_batch("group", &[position], batch)
            .await
            .unwrap();
        rest = tail;
    }
}

async fn check_against_fold(backend: Backend, cases: u32) {
    let mut runner = TestRunner::new(Config {
        cases,
        ..Config::default()
    });
    let strategy = (
        events::stream("s".into(), 40),
        proptest::collection::vec(1..8usize, 1..5),
    );
    let mut generated = Vec::new();
    for _ in 0..cases {
        generated.push(strategy.new_tree(&mut runner).unwrap().current());
    }
    for (events, sizes) in generated {
        let (_guard, db) = TestDb::create(backend).await;
        let store = Store::new(db);
        store.migrate().await.unwrap();
        apply_in_batches(&store, &events, &sizes).await;
        // Applying everything again (a replay) changes nothing.
        apply_in_batches(&store, &events, &[5]).await;
        assert_eq!(
            store.snapshot().await.unwrap(),
            ReadModel::fold(&events),
            "events: {events:#?}"
        );
    }
}

#[tokio::test]
async fn sqlite_rows_equal_the_fold_of_random_streams() {
    check_against_fold(Backend::Sqlite, 24).await;
}

#[tokio::test]
async fn postgres_rows_equal_the_fold_of_random_streams() {
    check_against_fold(Backend::Postgres, 8).await;
}

#[tokio::test]
async fn a_batch_commits_its_offsets_with_its_rows() {
    let (_guard, db) = TestDb::create(Backend::Sqlite).await;
    let store = Store::new(db);
    store.migrate().await.unwrap();
    let events = [
        recorded(registered("c1", "a@example.com")),
        recorded(placed("o1", "c1", 700, 1)),
        recorded(captured("p1", "o1", 700)),
        recorded(refunded("p1", "o1", 200)),
    ];
    let position = PartitionOffset {
        topic: "orders".into(),
        partition: 2,
        next_offset: 10,
    };
    let outcome = store
        .apply_batch("g", std::slice::from_ref(&position), &events)
        .await
        .unwrap();
    assert_eq!((outcome.applied, outcome.duplicates), (4, 0));
    let again = store
        .apply_batch("g", &[position], &events[1..2])
        .await
        .unwrap();
    assert_eq!((again.applied, again.duplicates), (0, 1));
    let at = |offset| eventline_common::kafka::Position {
        topic: "orders".into(),
        partition: 2,
        offset,
    };
    assert!(store.has_passed("g", &at(9)).await.unwrap());
    assert!(!store.has_passed("g", &at(10)).await.unwrap());
    let customer = store.customer("c1").await.unwrap().unwrap();
    assert_eq!(
        (customer.order_count, customer.lifetime_value_minor),
        (1, 500)
    );
}

#[test]
fn the_strategy_makes_redeliveries() {
    // A check of the generator itself: some streams hold the same event id twice.
    let mut runner = TestRunner::deterministic();
    let strategy = events::stream("x".into(), 10);
    let with_duplicates = (0..50)
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .filter(|events| {
            let ids: std::collections::BTreeSet<_> = events.iter().map(|e| e.event_id()).collect();
            ids.len() < events.len()
        })
        .count();
    assert!(with_duplicates > 0);
}
