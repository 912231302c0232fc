//! The transactional offset store on PostgreSQL and SQLite, and the runtime's refusal to start
//! without one in the transactional mode.

use eventline_common::catalog::Catalog;
use eventline_common::db::{Database, DatabaseSettings};
use eventline_common::kafka::consumer::{
    Batch, ConsumerError, ConsumerMetrics, ConsumerRuntime, ConsumerSettings, Handler, HandlerError, OffsetMode,
    OffsetStore, PartitionOffset,
};
use eventline_common::kafka::{KafkaSettings, Position};
use eventline_common::registry_client::{RegistryClient, SchemaRegistrySettings};
use eventline_testkit::{PgDatabase, SqliteDatabase};
use tokio_util::sync::CancellationToken;

fn metrics() -> ConsumerMetrics {
    ConsumerMetrics::registered_in(&prometheus::Registry::new()).unwrap()
}

fn at(topic: &str, partition: i32, next_offset: i64) -> PartitionOffset {
    PartitionOffset { topic: topic.to_owned(), partition, next_offset }
}

async fn offsets_commit_with_the_transaction_or_not_at_all(url: &str) {
    let db = Database::connect(&DatabaseSettings { url: url.to_owned(), ..DatabaseSettings::default() }).await.unwrap();
    let store = OffsetStore::new(db.clone());
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();

    let mut tx = db.pool().begin().await.unwrap();
    OffsetStore::save(&mut tx, "g", &[at("orders", 0, 5)]).await.unwrap();
    tx.rollback().await.unwrap();
    assert!(store.load("g", "orders", &[0]).await.unwrap().is_empty(), "rolled back with its transaction");

    let mut tx = db.pool().begin().await.unwrap();
    OffsetStore::save(&mut tx, "g", &[at("orders", 0, 5), at("orders", 2, 9)]).await.unwrap();
    OffsetStore::save(&mut tx, "g", &[at("orders", 0, 7)]).await.unwrap();
    tx.commit().await.unwrap();
    let loaded = store.load("g", "orders", &[0, 1, 2]).await.unwrap();
    assert_eq!(loaded.into_iter().collect::<Vec<_>>(), [(0, 7), (2, 9)]);
    assert!(store.load("g", "orders", &[1]).await.unwrap().is_empty(), "only the partitions asked for");
    assert!(store.load("other", "orders", &[0]).await.unwrap().is_empty(), "groups are separate");

    store.store_if_absent("g", &[at("orders", 0, 1), at("orders", 1, 3)]).await.unwrap();
    let loaded = store.load("g", "orders", &[0, 1]).await.unwrap();
    assert_eq!(loaded.into_iter().collect::<Vec<_>>(), [(0, 7), (1, 3)], "a stored offset wins over a start");

    assert!(store.has_passed("g", &Position { topic: "orders".into(), partition: 0, offset: 6 }).await.unwrap());
    assert!(!store.has_passed("g", &Position { topic: "orders".into(), partition: 0, offset: 7 }).await.unwrap());
    assert_eq!(store.list("g").await.unwrap(), [at("orders", 0, 7), at("orders", 1, 3), at("orders", 2, 9)]);
}

#[tokio::test]
async fn offsets_commit_with_the_transaction_or_not_at_all_on_postgres() {
    let pg = PgDatabase::create().await;
    offsets_commit_with_the_transaction_or_not_at_all(pg.url()).await;
}

#[tokio::test]
async fn offsets_commit_with_the_transaction_or_not_at_all_on_sqlite() {
    let sqlite = SqliteDatabase::create();
    offsets_commit_with_the_transaction_or_not_at_all(sqlite.url()).await;
}

struct Nothing;

impl Handler for Nothing {
    async fn handle(&self, _batch: &Batch) -> Result<(), HandlerError> {
        Ok(())
    }
}

#[tokio::test]
async fn the_transactional_mode_needs_an_offset_store_and_the_kafka_mode_refuses_one() {
    let registry = RegistryClient::new(&SchemaRegistrySettings::default()).unwrap();
    let catalog = Catalog::embedded().unwrap();
    let mut settings = ConsumerSettings::new("g", ["orders"]);
    settings.offset_mode = OffsetMode::Transactional;
    let runtime = ConsumerRuntime::new(
        settings.clone(),
        KafkaSettings::default(),
        registry.clone(),
        catalog.clone(),
        Nothing,
        metrics(),
    );
    let error = runtime.run(CancellationToken::new()).await.unwrap_err();
    assert!(matches!(error, ConsumerError::MissingOffsetStore), "{error}");

    let sqlite = SqliteDatabase::create();
    let db = Database::connect(&DatabaseSettings { url: sqlite.url().to_owned(), ..DatabaseSettings::default() })
        .await
        .unwrap();
    settings.offset_mode = OffsetMode::Kafka;
    let runtime = ConsumerRuntime::new(
        settings.clone(),
        KafkaSettings::default(),
        registry.clone(),
        catalog.clone(),
        Nothing,
        metrics(),
    )
    .with_offset_store(OffsetStore::new(db));
    assert!(matches!(runtime.run(CancellationToken::new()).await, Err(ConsumerError::UnexpectedOffsetStore)));

    settings.event_types = vec!["NoSuchEvent".into()];
    let runtime = ConsumerRuntime::new(settings, KafkaSettings::default(), registry, catalog, Nothing, metrics());
    let error = runtime.run(CancellationToken::new()).await.unwrap_err();
    assert!(error.to_string().contains("NoSuchEvent"), "{error}");
}
