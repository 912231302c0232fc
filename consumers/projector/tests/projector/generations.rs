//! The generations in SQL, without a broker: a new generation's tables are the migrated ones,
//! a swap waits until the build has reached the active group, and a swapped-out generation is
//! not written (neither rows nor offsets) until a rollback makes it active again.

use std::collections::BTreeSet;

use eventline_common::db::{Backend as DbBackend, Database};
use eventline_common::generations::{now_ms, GenerationError, GenerationState};
use eventline_common::kafka::consumer::PartitionOffset;
use eventline_common::kafka::Position;
use eventline_common::service::Rebuildable as _;
use eventline_projector::store::{Store, StoreError};
use eventline_projector::{ProjectorService, ProjectorSettings};
use sqlx::Row as _;

use crate::events::{placed, recorded};
use crate::support::{Backend, TestDb};

const STALE_MS: i64 = 30_000;

fn topics() -> Vec<String> {
    ProjectorSettings::default().consumer.topics
}

async fn states(db: &Database, group: &str) -> Vec<(i64, GenerationState)> {
    ProjectorService::generations(db.clone(), group)
        .list()
        .await
        .unwrap()
        .iter()
        .map(|g| (g.generation, g.state))
        .collect()
}

/// Column names, types and nullability, and index names without the table prefix.
async fn shape(db: &Database, prefix: &str, table: &str) -> (Vec<String>, BTreeSet<String>) {
    let name = format!("{prefix}{table}");
    let (columns_sql, indexes_sql) = match db.backend() {
        DbBackend::Sqlite => (
            "SELECT name || ' ' || type || ' ' || \"notnull\" || ' ' || pk FROM pragma_table_info($1) ORDER BY cid",
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = $1 AND sql IS NOT NULL",
        ),
        DbBackend::Postgres => (
            "SELECT column_name || ' ' || data_type || ' ' || is_nullable FROM information_schema.columns \
             WHERE table_name = $1 ORDER BY ordinal_position",
            "SELECT CAST(indexname AS TEXT) FROM pg_indexes WHERE tablename = $1",
        ),
    };
    let columns = sqlx::query(columns_sql)
        .bind(name.clone())
        .fetch_all(db.pool())
        .await
        .unwrap()
        .iter()
        .map(|row| row.get::<String, _>(0))
        .collect();
    let indexes = sqlx::query(indexes_sql)
        .bind(name)
        .fetch_all(db.pool())
        .await
        .unwrap()
        .iter()
        .map(|row| row.get::<String, _>(0).replacen(prefix, "", 1))
        .collect();
    (columns, indexes)
}

async fn generation_tables_are_the_migrated_ones(backend: Backend) {
    let (_guard, db) = TestDb::create(backend).await;
    Store::new(db.clone()).migrate().await.unwrap();
    let started = ProjectorService::generations(db.clone(), "g").begin_build(now_ms(), STALE_MS).await.unwrap();
    assert_eq!(started.building.table_prefix, "projector_g2_");
    for table in ["orders", "customers", "payments", "applied_events"] {
        let migrated = shape(&db, "projector_", table).await;
        assert!(!migrated.0.is_empty(), "{table} has columns");
        assert_eq!(shape(&db, "projector_g2_", table).await, migrated, "{table}");
    }
}

#[tokio::test]
async fn generation_tables_are_the_migrated_ones_on_sqlite() {
    generation_tables_are_the_migrated_ones(Backend::Sqlite).await;
}

#[tokio::test]
async fn generation_tables_are_the_migrated_ones_on_postgres() {
    generation_tables_are_the_migrated_ones(Backend::Postgres).await;
}

async fn swaps_wait_for_the_build_and_swapped_out_generations_are_not_written(backend: Backend) {
    let (_guard, db) = TestDb::create(backend).await;
    let first = Store::new(db.clone());
    first.migrate().await.unwrap();
    let generations = ProjectorService::generations(db.clone(), "g");
    let second = Store::for_generation(db.clone(), 2);
    let at = |next_offset| PartitionOffset { topic: "orders".into(), partition: 0, next_offset };
    let event = recorded(placed("o1", "c1", 100, 1));
    first.apply_batch("g", &[at(5)], std::slice::from_ref(&event)).await.unwrap();
    generations.begin_build(now_ms(), STALE_MS).await.unwrap();

    // The build has not reached generation 1's offset yet: no swap, nothing changes.
    second.apply_batch("g.g2", &[at(4)], &[]).await.unwrap();
    let behind = generations.swap(2, &topics(), now_ms()).await.unwrap_err();
    match &behind {
        GenerationError::NotCaughtUp { generation: 2, behind } => {
            assert_eq!((behind[0].next_offset, behind[0].reference), (Some(4), 5));
        }
        other => panic!("expected NotCaughtUp, got {other:?}"),
    }
    assert_eq!(states(&db, "g").await, [(1, GenerationState::Active), (2, GenerationState::Building)]);

    second.apply_batch("g.g2", &[at(5)], std::slice::from_ref(&event)).await.unwrap();
    let swapped = generations.swap(2, &topics(), now_ms()).await.unwrap();
    assert_eq!(swapped.activates(), Some(2));
    assert_eq!(generations.active().await.unwrap().generation, 2);

    // Generation 1 is previous: a batch for it writes nothing, neither rows nor offsets.
    let late = recorded(placed("o2", "c1", 50, 2));
    let refused = first.apply_batch("g", &[at(6)], std::slice::from_ref(&late)).await.unwrap_err();
    assert!(
        matches!(refused, StoreError::NotWritable { generation: 1, ref state } if state == "previous"),
        "{refused:?}"
    );
    assert!(first.order("o2").await.unwrap().is_none());
    let position = |offset| Position { topic: "orders".into(), partition: 0, offset };
    assert!(!first.has_passed("g", &position(5)).await.unwrap());
    second.apply_batch("g.g2", &[at(6)], std::slice::from_ref(&late)).await.unwrap();
    assert!(second.order("o2").await.unwrap().is_some());

    // Rolled back, generation 1 is written again and generation 2 is not.
    generations.rollback(now_ms()).await.unwrap();
    first.apply_batch("g", &[at(6)], std::slice::from_ref(&late)).await.unwrap();
    assert_eq!(first.snapshot().await.unwrap(), second.snapshot().await.unwrap());
    assert!(matches!(
        second.apply_batch("g.g2", &[at(7)], &[]).await,
        Err(StoreError::NotWritable { generation: 2, .. })
    ));
}

#[tokio::test]
async fn swaps_wait_for_the_build_and_swapped_out_generations_are_not_written_on_sqlite() {
    swaps_wait_for_the_build_and_swapped_out_generations_are_not_written(Backend::Sqlite).await;
}

#[tokio::test]
async fn swaps_wait_for_the_build_and_swapped_out_generations_are_not_written_on_postgres() {
    swaps_wait_for_the_build_and_swapped_out_generations_are_not_written(Backend::Postgres).await;
}

/// A database from before `eventline_generations`: the projector's generations, kept in
/// `projector_generations` then, are copied at its first start, once.
async fn generations_kept_by_the_projector_before_are_copied_once(backend: Backend) {
    let (_guard, db) = TestDb::create(backend).await;
    let store = Store::new(db.clone());
    store.offsets().migrate().await.unwrap();
    db.migrate(&eventline_projector::store::migrations()).await.unwrap();
    for statement in [
        "UPDATE projector_generations SET state = 'previous' WHERE generation = 1",
        "INSERT INTO projector_generations (generation, group_id, table_prefix, state, created_at_ms, activated_at_ms) \
         VALUES (2, 'g.g2', 'projector_g2_', 'active', 1, 2)",
    ] {
        sqlx::query(statement).execute(db.pool()).await.unwrap();
    }

    store.migrate().await.unwrap();
    assert_eq!(states(&db, "g").await, [(1, GenerationState::Previous), (2, GenerationState::Active)]);
    let active = ProjectorService::generations(db.clone(), "g").active().await.unwrap();
    assert_eq!((active.group_id.as_str(), active.activated_at_ms), ("g.g2", Some(2)));

    sqlx::query("DELETE FROM projector_generations").execute(db.pool()).await.unwrap();
    store.migrate().await.unwrap();
    assert_eq!(states(&db, "g").await, [(1, GenerationState::Previous), (2, GenerationState::Active)]);
}

#[tokio::test]
async fn generations_kept_by_the_projector_before_are_copied_once_on_sqlite() {
    generations_kept_by_the_projector_before_are_copied_once(Backend::Sqlite).await;
}

#[tokio::test]
async fn generations_kept_by_the_projector_before_are_copied_once_on_postgres() {
    generations_kept_by_the_projector_before_are_copied_once(Backend::Postgres).await;
}
