//! The read model in SQL (PostgreSQL or SQLite): applying batches of events together with the
//! consumer offsets in one transaction, and the queries of the API.
//!
//! A [`Store`] is bound to the tables of one generation (see [`eventline_common::generations`]);
//! [`Store::new`] is generation 1, the original tables. A batch loads the rows its events touch,
//! applies the events with the in-memory fold and writes the rows they touched, in one
//! transaction and a handful of statements (see `batch`), so the database holds what the
//! in-memory fold holds. Each event's (time, id) goes to `…applied_events`; one seen before is
//! skipped. The time is part of the key so that the ids, random UUIDs, are stored in time
//! order: claiming a batch's ids touches a few pages at the end of the index instead of one
//! page per id all over it (at a million events that was most of a batch's cost). Every copy
//! of an event (a redelivery, a replay, a redrive, the outbox relay re-sending after a crash,
//! an HTTP retry answered from the idempotency store) carries its time unchanged; an upstream
//! that publishes an id again with another time has published a new event.
//!
//! Write transactions first update `projector_write_lock`, so concurrent partitions (and generation
//! swaps) apply one at a time; then a batch checks, under that lock, that its generation may still
//! be written ([`StoreError::NotWritable`] otherwise).

mod batch;
mod columns;
pub mod tables;

use std::sync::Arc;

use eventline_common::db::{Database, DbError, Migrations};
use eventline_common::generations::{self, GenerationError, FIRST};
use eventline_common::kafka::consumer::{OffsetStore, OffsetStoreError, PartitionOffset};
use eventline_common::kafka::Position;
use sqlx::{AnyConnection, Row as _};

use crate::domain::{Customer, Order, OrderStatus, Payment, ReadModel, Recorded, Stamp};
use columns::{customer_from, order_from, payment_from, uuid};
pub use tables::Tables;

/// The projector's migrations (versions 4000-4999 of the shared database).
pub fn migrations() -> Migrations {
    Migrations::new(sqlx::migrate!("./migrations/postgres"), sqlx::migrate!("./migrations/sqlite"))
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot apply the projector migrations")]
    Migrate(#[source] DbError),
    #[error("read model query failed")]
    Query(#[from] sqlx::Error),
    #[error("cannot save the consumer offsets")]
    Offsets(#[from] OffsetStoreError),
    #[error("cannot record the read model's generations")]
    Generations(#[from] GenerationError),
    #[error("the stored {column} is not valid: {value}")]
    Corrupt { column: &'static str, value: String },
    /// The generation was swapped out (or given up) while this batch waited for the lock.
    #[error("generation {generation} of the read model is {state}, no longer written")]
    NotWritable { generation: i64, state: String },
}

/// What applying a batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    pub applied: usize,
    pub duplicates: usize,
}

/// Where a page of a customer's orders continues: after this (placed time, order id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub placed_at_ms: i64,
    pub order_id: String,
}

impl Cursor {
    /// `<placed_at_ms>:<order_id>`.
    pub fn parse(text: &str) -> Option<Self> {
        let (millis, order_id) = text.split_once(':')?;
        Some(Self { placed_at_ms: millis.parse().ok()?, order_id: order_id.to_owned() })
    }

    pub fn after(order: &Order) -> Option<Self> {
        Some(Self { placed_at_ms: order.placed_at?.timestamp_millis(), order_id: order.order_id.clone() })
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.placed_at_ms, self.order_id)
    }
}

/// The read model tables of one generation in one database.
#[derive(Debug, Clone)]
pub struct Store {
    db: Database,
    offsets: OffsetStore,
    tables: Arc<Tables>,
    /// Whether ids applied before the upgrade to time-keyed ids are kept (asked once).
    legacy_applied: Arc<tokio::sync::OnceCell<bool>>,
}

impl Store {
    /// The store of generation 1 (the original tables).
    pub fn new(db: Database) -> Self {
        Self::for_generation(db, FIRST)
    }

    /// The store of `generation`'s tables.
    pub fn for_generation(db: Database, generation: i64) -> Self {
        Self {
            offsets: OffsetStore::new(db.clone()),
            tables: Arc::new(Tables::of(generation)),
            legacy_applied: Arc::default(),
            db,
        }
    }

    /// Creates the read model, generation and offset tables where missing, records the
    /// generations in `eventline_generations` the first time (see [`generations::ensure`]),
    /// and upgrades every generation's applied ids to time-keyed ones.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.offsets.migrate().await?;
        self.db.migrate(&migrations()).await.map_err(StoreError::Migrate)?;
        generations::ensure(&self.db, tables::SERVICE, &tables::ProjectorTables).await?;
        self.upgrade_applied_events().await
    }

    /// Rewrites each generation's `applied_events` still keyed by the event id alone (see
    /// [`tables::APPLIED_EVENTS_UPGRADE`]), under the write lock, so two processes starting at
    /// once upgrade it once.
    async fn upgrade_applied_events(&self) -> Result<(), StoreError> {
        let generations: Vec<i64> = sqlx::query(tables::GENERATIONS)
            .bind(tables::SERVICE)
            .fetch_all(self.db.pool())
            .await?
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()?;
        for generation in generations {
            let tables = Tables::of(generation);
            let name = format!("{}applied_events", tables.prefix());
            let mut tx = self.db.pool().begin().await?;
            sqlx::query(tables::LOCK).execute(&mut *tx).await?;
            let columns: Vec<String> = sqlx::query(tables::column_names(self.db.backend()))
                .bind(name.as_str())
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|row| row.try_get(0))
                .collect::<Result<_, _>>()?;
            if !columns.is_empty() && !columns.iter().any(|column| column == "event_ms") {
                for statement in tables.upgrade_statements() {
                    sqlx::query(&statement).execute(&mut *tx).await?;
                }
                tracing::info!(generation, table = %name, "applied event ids are now kept by (event time, event id)");
            }
            tx.commit().await?;
        }
        Ok(())
    }

    /// Whether ids applied before the upgrade to time-keyed ids are kept: then a claimed event
    /// is also looked up among them by id.
    async fn has_legacy_applied(&self, conn: &mut AnyConnection) -> Result<bool, StoreError> {
        if let Some(known) = self.legacy_applied.get() {
            return Ok(*known);
        }
        let count: i64 = sqlx::query(&self.tables.has_legacy_applied).fetch_one(&mut *conn).await?.try_get(0)?;
        let _ = self.legacy_applied.set(count > 0);
        Ok(count > 0)
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    pub fn offsets(&self) -> &OffsetStore {
        &self.offsets
    }

    pub fn generation(&self) -> i64 {
        self.tables.generation()
    }

    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    /// `true` once `group` has applied the event at `position`.
    pub async fn has_passed(&self, group: &str, position: &Position) -> Result<bool, StoreError> {
        Ok(self.offsets.has_passed(group, position).await?)
    }

    /// Applies `events` (in order, skipping ids applied before) and saves `positions` for
    /// `group`, in one transaction; [`StoreError::NotWritable`] (and nothing written) when the
    /// generation is neither active nor building any more.
    pub async fn apply_batch(
        &self,
        group: &str,
        positions: &[PartitionOffset],
        events: &[Recorded],
    ) -> Result<Applied, StoreError> {
        let mut tx = self.db.pool().begin().await?;
        sqlx::query(tables::LOCK).execute(&mut *tx).await?;
        let state = generations::state_of(&mut tx, tables::SERVICE, self.generation()).await?;
        if !tables::writable(state) {
            return Err(StoreError::NotWritable {
                generation: self.generation(),
                state: state.map_or_else(|| "gone".to_owned(), |state| state.to_string()),
            });
        }
        let outcome = self.apply_events(&mut tx, events).await?;
        OffsetStore::save(&mut tx, group, positions).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    pub async fn order(&self, order_id: &str) -> Result<Option<Order>, StoreError> {
        let mut conn = self.db.pool().acquire().await?;
        self.load_order(&mut conn, order_id).await
    }

    pub async fn customer(&self, customer_id: &str) -> Result<Option<Customer>, StoreError> {
        let mut conn = self.db.pool().acquire().await?;
        self.load_customer(&mut conn, customer_id).await
    }

    pub async fn payments_of_order(&self, order_id: &str) -> Result<Vec<Payment>, StoreError> {
        let rows = sqlx::query(&self.tables.payments_of_order).bind(order_id).fetch_all(self.db.pool()).await?;
        rows.iter().map(payment_from).collect()
    }

    /// A page of a customer's placed orders, newest first (by placed time, then order id
    /// descending), optionally only those in `status`, continuing after `cursor`.
    pub async fn customer_orders(
        &self,
        customer_id: &str,
        status: Option<OrderStatus>,
        limit: u32,
        cursor: Option<&Cursor>,
    ) -> Result<Vec<Order>, StoreError> {
        let sql = self.tables.customer_orders(status.is_some(), cursor.is_some());
        let mut query = sqlx::query(sql).bind(customer_id);
        if let Some(status) = status {
            query = query.bind(status.as_str());
        }
        if let Some(cursor) = cursor {
            query = query.bind(cursor.placed_at_ms).bind(cursor.order_id.clone());
        }
        let rows = query.bind(i64::from(limit)).fetch_all(self.db.pool()).await?;
        rows.iter().map(order_from).collect()
    }

    /// Every row and applied event id: what tests compare with the in-memory fold.
    pub async fn snapshot(&self) -> Result<ReadModel, StoreError> {
        let pool = self.db.pool();
        let mut model = ReadModel::default();
        for row in sqlx::query(&self.tables.all_orders).fetch_all(pool).await? {
            let order = order_from(&row)?;
            model.orders.insert(order.order_id.clone(), order);
        }
        for row in sqlx::query(&self.tables.all_customers).fetch_all(pool).await? {
            let customer = customer_from(&row)?;
            model.customers.insert(customer.customer_id.clone(), customer);
        }
        for row in sqlx::query(&self.tables.all_payments).fetch_all(pool).await? {
            let payment = payment_from(&row)?;
            model.payments.insert(payment.payment_id.clone(), payment);
        }
        for row in sqlx::query(&self.tables.all_applied).fetch_all(pool).await? {
            let time = row.try_get::<i64, _>(0)?;
            let time = chrono::DateTime::from_timestamp_millis(time)
                .ok_or_else(|| StoreError::Corrupt { column: "event_ms", value: time.to_string() })?;
            model.applied.insert(Stamp::new(uuid(&row.try_get::<String, _>(1)?)?, time));
        }
        Ok(model)
    }

    /// Applies one event in `conn`'s transaction; `false` when its id was applied before.
    async fn load_order(&self, conn: &mut AnyConnection, order_id: &str) -> Result<Option<Order>, StoreError> {
        let row = sqlx::query(&self.tables.order).bind(order_id).fetch_optional(&mut *conn).await?;
        row.as_ref().map(order_from).transpose()
    }

    async fn load_customer(&self, conn: &mut AnyConnection, customer_id: &str) -> Result<Option<Customer>, StoreError> {
        let row = sqlx::query(&self.tables.customer).bind(customer_id).fetch_optional(&mut *conn).await?;
        row.as_ref().map(customer_from).transpose()
    }
}
