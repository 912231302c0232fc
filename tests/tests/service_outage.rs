//! A consumer service on the scaffold whose downstream dependency goes down, on SQLite and
//! PostgreSQL (transactional offsets): the handler says "unavailable", the service's
//! `/health/ready` turns 503 naming the dependency after `outage.ready_after` while
//! `/health/live` stays 200, nothing is dead-lettered or retried, and once the dependency is
//! back every event is applied exactly once and the service is ready again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use eventline_common::catalog::Catalog;
use eventline_common::db::{Database, DatabaseSettings};
use eventline_common::events::OrderPlaced;
use eventline_common::kafka::consumer::{Batch, ConsumerSettings, Handler, HandlerError, OffsetMode, OffsetStore};
use eventline_common::service::{self, BasicSettings, ConsumerRun, ConsumerService, Platform, ServiceContext};
use eventline_e2e::{order_placed, Stack};
use eventline_testkit::{eventually, unique, PgDatabase, SqliteDatabase};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(60);
const ORDERS: usize = 20;
const DEPENDENCY: &str = "ledger-api";

/// Applies orders to `outage_orders`, unless the switch row says its dependency is down.
struct LedgerSync {
    db: Database,
}

impl ConsumerService for LedgerSync {
    const NAME: &'static str = "ledger_sync";
    type Settings = BasicSettings;
    type Handler = LedgerSync;

    fn default_settings() -> BasicSettings {
        let mut consumer = ConsumerSettings::new("ledger-sync", ["orders"]);
        consumer.event_types = vec!["OrderPlaced".into()];
        consumer.offset_mode = OffsetMode::Transactional;
        BasicSettings::new("127.0.0.1:0", consumer)
    }

    async fn build(ctx: &ServiceContext<BasicSettings>) -> anyhow::Result<Self> {
        for ddl in [
            "CREATE TABLE IF NOT EXISTS outage_orders (order_id TEXT PRIMARY KEY, applied BIGINT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS outage_switch (id BIGINT PRIMARY KEY, down BIGINT NOT NULL)",
        ] {
            sqlx::query(ddl).execute(ctx.db.pool()).await?;
        }
        Ok(Self { db: ctx.db.clone() })
    }

    fn handler(&self, _run: &ConsumerRun) -> LedgerSync {
        LedgerSync { db: self.db.clone() }
    }
}

impl Handler for LedgerSync {
    async fn handle(&self, batch: &Batch) -> Result<(), HandlerError> {
        let down: Option<(i64,)> = sqlx::query_as("SELECT down FROM outage_switch WHERE id = 1")
            .fetch_optional(self.db.pool())
            .await
            .map_err(HandlerError::retryable)?;
        if down.is_some_and(|(down,)| down == 1) {
            return Err(HandlerError::unavailable(DEPENDENCY, anyhow::anyhow!("connection refused")));
        }
        let mut tx = self.db.pool().begin().await.map_err(HandlerError::retryable)?;
        for event in batch {
            let order: OrderPlaced = event.event()?;
            // A second application would break the primary key and fail the test loudly.
            sqlx::query("INSERT INTO outage_orders (order_id, applied) VALUES ($1, 1)")
                .bind(&order.order_id)
                .execute(&mut *tx)
                .await
                .map_err(HandlerError::permanent)?;
        }
        OffsetStore::save(&mut tx, batch.group(), batch.positions()).await.map_err(HandlerError::retryable)?;
        tx.commit().await.map_err(HandlerError::retryable)
    }
}

async fn switch(db: &Database, down: bool) {
    let down = i64::from(down);
    sqlx::query("DELETE FROM outage_switch").execute(db.pool()).await.unwrap();
    sqlx::query("INSERT INTO outage_switch (id, down) VALUES (1, $1)").bind(down).execute(db.pool()).await.unwrap();
}

async fn get(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn a_downstream_outage_pauses_the_service_and_loses_nothing(database_url: &str) {
    let stack = Stack::start().await;
    let db = Database::connect(&DatabaseSettings { url: database_url.to_owned(), ..DatabaseSettings::default() })
        .await
        .unwrap();
    let mut settings = LedgerSync::default_settings();
    settings.consumer.group_id = unique("ledger-sync");
    settings.consumer.retry.max_attempts = 1; // a retry budget an outage would burn at once
    settings.consumer.outage.initial_backoff = Duration::from_millis(50);
    settings.consumer.outage.max_backoff = Duration::from_millis(200);
    settings.consumer.outage.ready_after = Duration::from_millis(300);
    let group = settings.consumer.group_id.clone();
    let platform = Platform {
        kafka: stack.broker.kafka_settings(),
        db: db.clone(),
        registry_client: stack.registry.client.clone(),
        catalog: Catalog::embedded().unwrap(),
        metrics: prometheus::Registry::new(),
    };
    let prepared = service::prepare::<LedgerSync>(platform, settings).await.unwrap();
    let url = format!("http://{}", prepared.local_addr().unwrap());
    switch(&db, true).await;

    stack.publish(&(0..ORDERS).map(|n| order_placed(&format!("order-{n}"), "EUR")).collect::<Vec<_>>()).await;

    let token = CancellationToken::new();
    let running = tokio::spawn(prepared.run(token.clone()));
    let reason = eventually("the service to report itself not ready", WAIT, || async {
        let (status, body) = get(&format!("{url}/health/ready")).await;
        (status == 503).then_some(body)
    })
    .await;
    assert!(reason.contains(DEPENDENCY), "{reason}");
    assert_eq!(get(&format!("{url}/health/live")).await.0, 200, "alive while it waits");
    let count = || async {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM outage_orders").fetch_one(db.pool()).await.unwrap();
        n
    };
    assert_eq!(count().await, 0);

    switch(&db, false).await;
    eventually("every order to be applied", WAIT, || async { (count().await == ORDERS as i64).then_some(()) }).await;
    eventually("the service to be ready again", WAIT, || async {
        (get(&format!("{url}/health/ready")).await.0 == 200).then_some(())
    })
    .await;
    let (_, metrics) = get(&format!("{url}/metrics")).await;
    let dead = format!("eventline_consumer_dead_lettered_total{{group=\"{group}\"");
    assert!(!metrics.contains(&dead), "nothing was dead-lettered:\n{metrics}");
    let handled = format!("eventline_consumer_events_total{{group=\"{group}\",outcome=\"handled\"}} {ORDERS}");
    assert!(metrics.contains(&handled), "every order handled once:\n{metrics}");
    token.cancel();
    tokio::time::timeout(WAIT, running).await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn a_downstream_outage_pauses_the_service_and_loses_nothing_on_sqlite() {
    let db = SqliteDatabase::create();
    a_downstream_outage_pauses_the_service_and_loses_nothing(db.url()).await;
}

#[tokio::test]
async fn a_downstream_outage_pauses_the_service_and_loses_nothing_on_postgres() {
    let db = PgDatabase::create().await;
    a_downstream_outage_pauses_the_service_and_loses_nothing(db.url()).await;
}
