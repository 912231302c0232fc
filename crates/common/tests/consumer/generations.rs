//! A second service gets `eventline rebuild` for free: `order_log`, a test-only consumer
//! service with one table (the ids of the orders placed), says only how to create and drop a
//! generation's table and which lock its batches take; the common generations rebuild it side
//! by side from the earliest offsets against the real broker while it runs, swap it in (the
//! running service follows), keep the old one as previous and roll back to it, on SQLite and
//! PostgreSQL.

use std::collections::BTreeSet;

use anyhow::Context as _;
use eventline_common::catalog::Catalog;
use eventline_common::db::{Database, DatabaseSettings};
use eventline_common::events::OrderPlaced;
use eventline_common::generations::{
    self, table_prefix, GenerationState, GenerationTables, RebuildContext, RebuildEvent, RebuildOutcome,
};
use eventline_common::kafka::consumer::{Batch, ConsumerSettings, Handler, HandlerError, OffsetMode, OffsetStore};
use eventline_common::service::{
    self, BasicSettings, ConsumerRun, ConsumerService, Platform, Rebuildable, RunTarget, ServiceContext,
};
use eventline_testkit::{eventually, PgDatabase, SqliteDatabase};
use sqlx::Row as _;
use tokio_util::sync::CancellationToken;

use crate::support::{settings, Env, WAIT};

const NAME: &str = "order_log";
const LOCK: &str = "UPDATE order_log_write_lock SET version = version + 1 WHERE id = 1";

/// The service's tables, as the generations need them.
struct OrderLogTables;

impl GenerationTables for OrderLogTables {
    fn write_lock(&self) -> &'static str {
        LOCK
    }

    fn create_statements(&self, prefix: &str) -> Vec<String> {
        vec![format!("CREATE TABLE {prefix}orders (order_id TEXT PRIMARY KEY)")]
    }

    fn drop_statements(&self, prefix: &str) -> Vec<String> {
        vec![format!("DROP TABLE IF EXISTS {prefix}orders")]
    }

    fn applied_events(&self, prefix: &str) -> Option<String> {
        Some(format!("SELECT COUNT(*) FROM {prefix}orders"))
    }
}

/// The ids of the orders placed, in `order_log_orders` (generation 1) or `order_log_g<N>_orders`.
struct OrderLog {
    db: Database,
}

impl ConsumerService for OrderLog {
    const NAME: &'static str = NAME;
    type Settings = BasicSettings;
    type Handler = OrderLogHandler;

    fn default_settings() -> BasicSettings {
        BasicSettings::new("127.0.0.1:0", ConsumerSettings::new("order-log", ["orders"]))
    }

    async fn build(ctx: &ServiceContext<BasicSettings>) -> anyhow::Result<Self> {
        let first = table_prefix(NAME, generations::FIRST);
        for statement in [
            format!("CREATE TABLE IF NOT EXISTS {first}orders (order_id TEXT PRIMARY KEY)"),
            "CREATE TABLE IF NOT EXISTS order_log_write_lock (id BIGINT PRIMARY KEY, version BIGINT NOT NULL)".into(),
            "INSERT INTO order_log_write_lock (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING".into(),
        ] {
            sqlx::query(&statement).execute(ctx.db.pool()).await.context("cannot create the order log")?;
        }
        generations::ensure(&ctx.db, NAME, Self::TABLES).await?;
        Ok(Self { db: ctx.db.clone() })
    }

    fn handler(&self, run: &ConsumerRun) -> OrderLogHandler {
        OrderLogHandler { db: self.db.clone(), generation: run.target.generation }
    }

    async fn current_run(&self, configured: &ConsumerSettings) -> anyhow::Result<RunTarget> {
        Ok(Self::generations(self.db.clone(), &configured.group_id).current_run().await?)
    }
}

impl Rebuildable for OrderLog {
    const TABLES: &'static dyn GenerationTables = &OrderLogTables;
}

/// Writes the orders of a batch to one generation's table with the batch's offsets, in one
/// transaction under the lock, while that generation is writable.
struct OrderLogHandler {
    db: Database,
    generation: i64,
}

impl OrderLogHandler {
    async fn apply(&self, batch: &Batch) -> Result<Result<(), GenerationState>, HandlerError> {
        let mut ids = Vec::new();
        for delivered in batch {
            if delivered.is::<OrderPlaced>() {
                ids.push(delivered.event::<OrderPlaced>()?.order_id);
            }
        }
        let insert = format!(
            "INSERT INTO {}orders (order_id) VALUES ($1) ON CONFLICT (order_id) DO NOTHING",
            table_prefix(NAME, self.generation)
        );
        let written = async {
            let mut tx = self.db.pool().begin().await?;
            sqlx::query(LOCK).execute(&mut *tx).await?;
            match generations::state_of(&mut tx, NAME, self.generation).await? {
                Some(state) if state.is_writable() => {}
                other => return Ok(Err(other.unwrap_or(GenerationState::Retired))),
            }
            for id in &ids {
                sqlx::query(&insert).bind(id.as_str()).execute(&mut *tx).await?;
            }
            OffsetStore::save(&mut tx, batch.group(), batch.positions()).await?;
            tx.commit().await?;
            Ok::<_, anyhow::Error>(Ok(()))
        };
        written.await.map_err(HandlerError::retryable)
    }
}

impl Handler for OrderLogHandler {
    async fn handle(&self, batch: &Batch) -> Result<(), HandlerError> {
        match self.apply(batch).await? {
            Ok(()) => Ok(()),
            Err(state) => Err(HandlerError::unavailable(
                "generation swap",
                anyhow::anyhow!("generation {} is {state}", self.generation),
            )),
        }
    }
}

async fn ids(db: &Database, generation: i64) -> BTreeSet<String> {
    let sql = format!("SELECT order_id FROM {}orders", table_prefix(NAME, generation));
    sqlx::query(&sql).fetch_all(db.pool()).await.unwrap().iter().map(|row| row.get(0)).collect()
}

async fn holds(db: &Database, generation: i64, expected: &BTreeSet<String>) {
    eventually(&format!("generation {generation} holds {} orders", expected.len()), WAIT, || async {
        (&ids(db, generation).await == expected).then_some(())
    })
    .await;
}

async fn states(db: &Database, group: &str) -> Vec<(i64, GenerationState)> {
    OrderLog::generations(db.clone(), group).list().await.unwrap().iter().map(|g| (g.generation, g.state)).collect()
}

async fn a_second_service_is_rebuilt_swapped_and_rolled_back(url: &str) {
    let env = Env::start().await;
    let topic = env.topic(2).await;
    let mut consumer = settings(&[&topic]);
    consumer.offset_mode = OffsetMode::Transactional;
    let group = consumer.group_id.clone();
    let settings = BasicSettings::new("127.0.0.1:0", consumer);
    let db = Database::connect(&DatabaseSettings { url: url.to_owned(), ..DatabaseSettings::default() }).await.unwrap();
    let platform = Platform {
        kafka: env.kafka(),
        db: db.clone(),
        registry_client: env.registry.clone(),
        catalog: Catalog::embedded().unwrap(),
        metrics: prometheus::Registry::new(),
    };
    let token = CancellationToken::new();
    let running =
        tokio::spawn(service::prepare::<OrderLog>(platform, settings.clone()).await.unwrap().run(token.clone()));

    let mut placed = BTreeSet::new();
    for n in 0..10 {
        let id = format!("o{n}");
        env.order(&topic, n % 2, &id).await;
        placed.insert(id);
    }
    holds(&db, 1, &placed).await;

    let context = RebuildContext {
        settings,
        db: db.clone(),
        kafka: env.kafka(),
        registry_client: env.registry.clone(),
        catalog: Catalog::embedded().unwrap(),
    };
    let mut events = Vec::new();
    let summary =
        generations::rebuild::<OrderLog>(context, CancellationToken::new(), |event| events.push(event.clone()))
            .await
            .unwrap();
    assert_eq!(summary.outcome, RebuildOutcome::Swapped, "{summary:?}");
    assert_eq!((summary.generation, summary.serving), (2, 1));
    assert_eq!((summary.table_prefix.as_str(), summary.group_id.clone()), ("order_log_g2_", format!("{group}.g2")));
    assert!(matches!(events.first(), Some(RebuildEvent::Started { generation: 2, serving: 1, .. })), "{events:?}");
    assert_eq!(ids(&db, 2).await, placed, "generation 2 was built from the earliest offsets");
    let generations = OrderLog::generations(db.clone(), &group);
    let status = generations::status(&generations).await.unwrap();
    assert_eq!(status.active, 2);
    let counts: Vec<_> = status.generations.iter().map(|g| (g.generation.state, g.applied_events)).collect();
    assert_eq!(counts, [(GenerationState::Previous, Some(10)), (GenerationState::Active, Some(10))]);

    // The running service follows generation 2; generation 1, previous, is not written.
    let mut later = placed.clone();
    for n in 10..13 {
        let id = format!("o{n}");
        env.order(&topic, n % 2, &id).await;
        later.insert(id);
    }
    holds(&db, 2, &later).await;
    assert_eq!(ids(&db, 1).await, placed);

    // Rolled back, generation 1 is active again and catches up from its own offsets.
    let rolled = generations::rollback(&generations).await.unwrap();
    assert_eq!((rolled.activated.generation, rolled.demoted), (1, 2));
    assert_eq!(states(&db, &group).await, [(1, GenerationState::Active), (2, GenerationState::Previous)]);
    holds(&db, 1, &later).await;

    token.cancel();
    running.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_service_is_rebuilt_swapped_and_rolled_back_on_sqlite() {
    let db = SqliteDatabase::create();
    a_second_service_is_rebuilt_swapped_and_rolled_back(db.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_service_is_rebuilt_swapped_and_rolled_back_on_postgres() {
    let db = PgDatabase::create().await;
    a_second_service_is_rebuilt_swapped_and_rolled_back(db.url()).await;
}
