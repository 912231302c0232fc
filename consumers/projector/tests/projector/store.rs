//! The SQL store against the in-memory fold, without a broker: random event streams applied in
//! random batches give the rows the fold gives, on SQLite and PostgreSQL.

use eventline_common::kafka::consumer::PartitionOffset;
use eventline_projector::domain::{ReadModel, Recorded};
use eventline_projector::store::Store;
use proptest::prelude::*;
use proptest::strategy::ValueTree as _;
use proptest::test_runner::TestRunner;

use crate::events::{self, captured, placed, recorded, refunded, registered, Seed};
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
        let position = PartitionOffset { topic: "orders".into(), partition: 0, next_offset: offset };
        store.apply_batch("group", &[position], batch).await.unwrap();
        rest = tail;
    }
}

/// `STORE_SEED=<seed>` replays the streams and batch sizes of a failed run.
async fn check_against_fold(backend: Backend, cases: u32) {
    let seed = Seed::from_env("STORE_SEED", &format!("store {backend:?}"));
    let mut runner = seed.runner();
    let strategy = (events::stream("s".into(), 40), proptest::collection::vec(1..8usize, 1..5));
    let mut generated = Vec::new();
    for _ in 0..cases {
        generated.push(strategy.new_tree(&mut runner).unwrap().current());
    }
    for (case, (events, sizes)) in generated.into_iter().enumerate() {
        let (_guard, db) = TestDb::create(backend).await;
        let store = Store::new(db);
        store.migrate().await.unwrap();
        apply_in_batches(&store, &events, &sizes).await;
        // Applying everything again (a replay) changes nothing.
        apply_in_batches(&store, &events, &[5]).await;
        assert_eq!(
            store.snapshot().await.unwrap(),
            ReadModel::fold(&events),
            "case {case}, seed {seed}, batch sizes {sizes:?}, events: {events:#?}"
        );
    }
}

#[tokio::test]
async fn sqlite_rows_equal_the_fold_of_random_streams() {
    check_against_fold(Backend::Sqlite, 100).await;
}

#[tokio::test]
async fn postgres_rows_equal_the_fold_of_random_streams() {
    check_against_fold(Backend::Postgres, 16).await;
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
    let position = PartitionOffset { topic: "orders".into(), partition: 2, next_offset: 10 };
    let outcome = store.apply_batch("g", std::slice::from_ref(&position), &events).await.unwrap();
    assert_eq!((outcome.applied, outcome.duplicates), (4, 0));
    let again = store.apply_batch("g", &[position], &events[1..2]).await.unwrap();
    assert_eq!((again.applied, again.duplicates), (0, 1));
    let at = |offset| eventline_common::kafka::Position { topic: "orders".into(), partition: 2, offset };
    assert!(store.has_passed("g", &at(9)).await.unwrap());
    assert!(!store.has_passed("g", &at(10)).await.unwrap());
    let customer = store.customer("c1").await.unwrap().unwrap();
    assert_eq!((customer.order_count, customer.lifetime_value_minor), (1, 500));
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

#[test]
fn a_seed_gives_the_same_streams_again() {
    // What makes a printed seed worth printing: the streams, ids and times included, replay.
    let streams = |seed: Seed| {
        let mut runner = seed.runner();
        (0..5).map(|_| events::stream("r".into(), 20).new_tree(&mut runner).unwrap().current()).collect::<Vec<_>>()
    };
    assert_eq!(streams(Seed::new("STORE_SEED", 7)), streams(Seed::new("STORE_SEED", 7)));
    assert_ne!(streams(Seed::new("STORE_SEED", 7)), streams(Seed::new("STORE_SEED", 8)));
}

/// Read models created while applied ids were keyed by the id alone: `migrate` rewrites the
/// table keyed by (time, id), and the ids already there (time unknown) still count as applied.
async fn ids_applied_before_the_upgrade_still_count(backend: Backend) {
    let (_guard, db) = TestDb::create(backend).await;
    let store = Store::new(db.clone());
    store.offsets().migrate().await.unwrap();
    db.migrate(&eventline_projector::store::migrations()).await.unwrap();
    let before = recorded(registered("c1", "a@example.com"));
    sqlx::query("INSERT INTO projector_applied_events (event_id) VALUES ($1)")
        .bind(before.event_id().to_string())
        .execute(db.pool())
        .await
        .unwrap();

    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    let after = recorded(registered("c2", "b@example.com"));
    let position = PartitionOffset { topic: "customers".into(), partition: 0, next_offset: 2 };
    let outcome = store.apply_batch("g", &[position], &[before.clone(), after.clone()]).await.unwrap();
    assert_eq!((outcome.applied, outcome.duplicates), (1, 1));
    assert!(store.customer("c1").await.unwrap().is_none(), "applied before the upgrade: skipped");
    assert!(store.customer("c2").await.unwrap().is_some());
    let applied = store.snapshot().await.unwrap().applied;
    assert!(applied.contains(&after.stamp), "{applied:?}");
    assert_eq!(applied.len(), 3, "the old id (time unknown), and both with their times: {applied:?}");
}

#[tokio::test]
async fn ids_applied_before_the_upgrade_still_count_on_sqlite() {
    ids_applied_before_the_upgrade_still_count(Backend::Sqlite).await;
}

#[tokio::test]
async fn ids_applied_before_the_upgrade_still_count_on_postgres() {
    ids_applied_before_the_upgrade_still_count(Backend::Postgres).await;
}

/// A copy of an event carries its id and its time; an id published again with another time is
/// another event, applied (the store and the fold agree).
#[tokio::test]
async fn an_event_is_its_id_and_time() {
    let (_guard, db) = TestDb::create(Backend::Sqlite).await;
    let store = Store::new(db);
    store.migrate().await.unwrap();
    let first = recorded(placed("o1", "c1", 700, 1));
    let copy = first.clone();
    let mut later = first.clone();
    later.stamp.time += chrono::Duration::seconds(5);
    let events = [first, copy, later];
    let position = PartitionOffset { topic: "orders".into(), partition: 0, next_offset: 3 };
    let outcome = store.apply_batch("g", &[position], &events).await.unwrap();
    assert_eq!((outcome.applied, outcome.duplicates), (2, 1));
    assert_eq!(store.snapshot().await.unwrap(), ReadModel::fold(&events));
}
