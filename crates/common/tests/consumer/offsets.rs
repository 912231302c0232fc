//! Stop a consumer mid-stream and start a new one in the same group: it resumes exactly where
//! the first stopped: after the offsets its transactions stored (PostgreSQL, SQLite), or after
//! the offsets committed to Kafka.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use eventline_common::db::{Database, DatabaseSettings};
use eventline_common::events::OrderPlaced;
use eventline_common::kafka::consumer::{
    group_lag, Batch, ConsumerMetrics, ConsumerSettings, Handler, HandlerError, OffsetMode, OffsetSource, OffsetStore,
};
use eventline_testkit::{eventually, PgDatabase, SqliteDatabase};
use sqlx::Row as _;

use crate::support::{commit_offsets, settings, shared, Env, Running, Shared, WAIT};

const PER_PARTITION: i64 = 15;

/// Writes a row per event and the batch's offsets in one transaction. With a `limit`, once
/// that many events are applied it writes the rows and then fails before committing: the
/// transaction rolls back, and the runtime retries until it is stopped.
struct Projector {
    db: Database,
    limit: Option<usize>,
    applied: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
    first_offsets: Shared<BTreeMap<i32, i64>>,
}

impl Handler for Projector {
    async fn handle(&self, batch: &Batch) -> Result<(), HandlerError> {
        if let Some(first) = batch.events().first() {
            self.first_offsets.lock().unwrap().entry(batch.partition()).or_insert(first.offset);
        }
        let mut tx = self.db.pool().begin().await.map_err(HandlerError::retryable)?;
        for event in batch {
            let order: OrderPlaced = event.event()?;
            sqlx::query("INSERT INTO consumer_rows (record_partition, record_offset, order_id) VALUES ($1, $2, $3)")
                .bind(i64::from(event.partition))
                .bind(event.offset)
                .bind(order.order_id)
                .execute(&mut *tx)
                .await
                .map_err(HandlerError::retryable)?;
        }
        if self.limit.is_some_and(|limit| self.applied.load(Ordering::SeqCst) >= limit) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(HandlerError::retryable(anyhow::anyhow!("paused by the test")));
        }
        OffsetStore::save(&mut tx, batch.group(), batch.positions()).await.map_err(HandlerError::retryable)?;
        tx.commit().await.map_err(HandlerError::retryable)?;
        self.applied.fetch_add(batch.len(), Ordering::SeqCst);
        Ok(())
    }
}

impl Projector {
    fn new(db: &Database, limit: Option<usize>) -> Self {
        Self { db: db.clone(), limit, applied: Arc::default(), refused: Arc::default(), first_offsets: shared() }
    }
}

async fn rows(db: &Database) -> Vec<(i64, i64)> {
    let rows = sqlx::query(
        "SELECT record_partition, record_offset FROM consumer_rows ORDER BY record_partition, record_offset",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    rows.iter().map(|r| (r.get::<i64, _>(0), r.get::<i64, _>(1))).collect()
}

async fn produce(env: &Env, topic: &str) {
    for i in 0..PER_PARTITION {
        for partition in 0..2 {
            env.order(topic, partition, &format!("order-{partition}-{i}")).await;
        }
    }
}

fn resumable(mut settings: ConsumerSettings) -> ConsumerSettings {
    settings.batch_max_size = 4;
    settings.retry.max_attempts = 100_000;
    settings
}

async fn transactional_offsets_resume_exactly_after_a_stop(url: &str) {
    let env = Env::start().await;
    let db = Database::connect(&DatabaseSettings { url: url.to_owned(), ..DatabaseSettings::default() }).await.unwrap();
    let store = OffsetStore::new(db.clone());
    store.migrate().await.unwrap();
    sqlx::query("CREATE TABLE consumer_rows (record_partition BIGINT NOT NULL, record_offset BIGINT NOT NULL, order_id TEXT NOT NULL)")
        .execute(db.pool())
        .await
        .unwrap();
    let topic = env.topic(2).await;
    produce(&env, &topic).await;
    let mut settings = resumable(settings(&[&topic]));
    settings.offset_mode = OffsetMode::Transactional;
    let group = settings.group_id.clone();
    let metrics = ConsumerMetrics::registered_in(&prometheus::Registry::new()).unwrap();

    let first = Projector::new(&db, Some(10));
    let (applied, refused) = (first.applied.clone(), first.refused.clone());
    let running = Running::start(env.runtime(settings.clone(), first, &metrics).with_offset_store(store.clone()));
    eventually("the first consumer paused mid-stream", WAIT, || async {
        (applied.load(Ordering::SeqCst) >= 10 && refused.load(Ordering::SeqCst) > 0).then_some(())
    })
    .await;
    running.stop().await;
    let stored = store.load(&group, &topic, &[0, 1]).await.unwrap();
    let after_first = rows(&db).await;
    for partition in 0..2 {
        let next = stored.get(&partition).copied().unwrap_or(0);
        let offsets: Vec<i64> =
            after_first.iter().filter(|(p, _)| *p == i64::from(partition)).map(|(_, o)| *o).collect();
        assert_eq!(
            offsets,
            (0..next).collect::<Vec<_>>(),
            "partition {partition}: rows are exactly the stored progress"
        );
    }
    assert!(after_first.len() < 30, "stopped mid-stream");
    // Kafka's commits are only a copy here: rewound, they must not make anything run twice.
    commit_offsets(&env.kafka(), &group, &topic, &[(0, 0), (1, 0)]).await;

    let second = Projector::new(&db, None);
    let first_offsets = second.first_offsets.clone();
    let running = Running::start(env.runtime(settings, second, &metrics).with_offset_store(store.clone()));
    eventually("every row written", WAIT, || async { (rows(&db).await.len() >= 30).then_some(()) }).await;
    running.stop().await;

    let expected: Vec<(i64, i64)> = (0..2).flat_map(|p| (0..PER_PARTITION).map(move |o| (p, o))).collect();
    assert_eq!(rows(&db).await, expected, "every event exactly once");
    let first_offsets = first_offsets.lock().unwrap().clone();
    for (partition, next) in &stored {
        if *next < PER_PARTITION {
            assert_eq!(first_offsets.get(partition), Some(next), "partition {partition} resumed at its stored offset");
        }
    }
    let end = store.load(&group, &topic, &[0, 1]).await.unwrap();
    assert_eq!(end, BTreeMap::from([(0, PER_PARTITION), (1, PER_PARTITION)]));
    let lag = group_lag(&env.kafka(), &group, &[topic], OffsetSource::Store(&store)).await.unwrap();
    assert!(lag.iter().all(|p| p.lag == 0 && p.committed == Some(PER_PARTITION)), "{lag:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transactional_offsets_resume_exactly_after_a_stop_on_postgres() {
    let pg = PgDatabase::create().await;
    transactional_offsets_resume_exactly_after_a_stop(pg.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transactional_offsets_resume_exactly_after_a_stop_on_sqlite() {
    let sqlite = SqliteDatabase::create();
    transactional_offsets_resume_exactly_after_a_stop(sqlite.url()).await;
}

/// Remembers what it saw; with a `limit`, refuses (retryably) once it saw that many.
struct Memory {
    seen: Shared<Vec<(i32, i64)>>,
    limit: Option<usize>,
    refused: Arc<AtomicUsize>,
}

impl Handler for Memory {
    async fn handle(&self, batch: &Batch) -> Result<(), HandlerError> {
        let mut seen = self.seen.lock().unwrap();
        if self.limit.is_some_and(|limit| seen.len() >= limit) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(HandlerError::retryable(anyhow::anyhow!("paused by the test")));
        }
        seen.extend(batch.iter().map(|e| (e.partition, e.offset)));
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_offsets_resume_after_the_committed_offsets() {
    let env = Env::start().await;
    let topic = env.topic(2).await;
    produce(&env, &topic).await;
    let settings = resumable(settings(&[&topic]));
    let group = settings.group_id.clone();
    let metrics = ConsumerMetrics::registered_in(&prometheus::Registry::new()).unwrap();

    let first_seen = shared::<Vec<(i32, i64)>>();
    let refused = Arc::new(AtomicUsize::new(0));
    let first = Memory { seen: first_seen.clone(), limit: Some(10), refused: refused.clone() };
    let running = Running::start(env.runtime(settings.clone(), first, &metrics));
    eventually("the first consumer paused mid-stream", WAIT, || async {
        (refused.load(Ordering::SeqCst) > 0).then_some(())
    })
    .await;
    running.stop().await;
    let committed: BTreeMap<i32, Option<i64>> =
        group_lag(&env.kafka(), &group, std::slice::from_ref(&topic), OffsetSource::Kafka)
            .await
            .unwrap()
            .into_iter()
            .map(|p| (p.partition, p.committed))
            .collect();
    let first_seen = first_seen.lock().unwrap().clone();
    for partition in 0..2 {
        let handled = first_seen.iter().filter(|(p, _)| *p == partition).count() as i64;
        assert_eq!(
            committed[&partition].unwrap_or(0),
            handled,
            "partition {partition}: committed exactly what was handled"
        );
    }

    let second_seen = shared::<Vec<(i32, i64)>>();
    let second = Memory { seen: second_seen.clone(), limit: None, refused: Arc::default() };
    let running = Running::start(env.runtime(settings, second, &metrics));
    eventually("every event seen", WAIT, || async {
        (first_seen.len() + second_seen.lock().unwrap().len() >= 30).then_some(())
    })
    .await;
    running.stop().await;

    let second_seen = second_seen.lock().unwrap().clone();
    let all: BTreeSet<(i32, i64)> = first_seen.iter().chain(&second_seen).copied().collect();
    assert_eq!(all.len(), 30);
    assert_eq!(first_seen.len() + second_seen.len(), 30, "nothing handled twice after a graceful stop");
    for partition in 0..2 {
        let resumed_at = second_seen.iter().find(|(p, _)| *p == partition).map(|(_, o)| *o);
        let committed = committed[&partition].unwrap_or(0);
        if committed < PER_PARTITION {
            assert_eq!(resumed_at, Some(committed), "partition {partition}");
        }
    }
}
