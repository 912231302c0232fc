//! The read model in SQL (PostgreSQL or SQLite): applying batches of events together with the
//! consumer offsets in one transaction, and the queries of the API.
//!
//! Each event is applied with [`domain::apply`] to the rows it touches, loaded and saved in the
//! batch's transaction, so the database holds what the in-memory fold holds. Event ids go to
//! `projector_applied_events`; an id seen before is skipped. Write transactions first update
//! `projector_write_lock`, so concurrent partitions apply one batch at a time.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use eventline_common::db::{Database, DbError, Migrations};
use eventline_common::kafka::consumer::{OffsetStore, OffsetStoreError, PartitionOffset};
use eventline_common::kafka::Position;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};
use uuid::Uuid;

use crate::domain::{
    self, Customer, Order, OrderStatus, Payment, ReadModel, Recorded, Slice, Stamp,
};

/// The projector's migrations (versions 4000-4999 of the shared database).
pub fn migrations() -> Migrations {
    Migrations::new(
        sqlx::migrate!("./migrations/postgres"),
        sqlx::migrate!("./migrations/sqlite"),
    )
}

const LOCK: &str = "UPDATE projector_write_lock SET version = version + 1 WHERE id = 1";
const MARK_APPLIED: &str =
    "INSERT INTO projector_applied_events (event_id) VALUES ($1) ON CONFLICT (event_id) DO NOTHING";
const ORDER_COLUMNS: &str = "order_id, customer_id, currency, total_minor, placed_at_ms, cancelled_at_ms, \
     cancel_reason, shipped_at_ms, carrier, tracking_number, captured_minor, refunded_minor, last_event_id, last_event_ms";
const CUSTOMER_COLUMNS: &str =
    "customer_id, email, name, registered_at_ms, order_count, lifetime_value_minor, last_event_id, last_event_ms";
const PAYMENT_COLUMNS: &str =
    "payment_id, order_id, currency, authorized_minor, captured_minor, refunded_minor, \
     failure_reason, last_event_id, last_event_ms";
const UPSERT_ORDER: &str = "INSERT INTO projector_orders (order_id, customer_id, currency, total_minor, status, \
     placed_at_ms, cancelled_at_ms, cancel_reason, shipped_at_ms, carrier, tracking_number, captured_minor, \
     refunded_minor, last_event_id, last_event_ms) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
     ON CONFLICT (order_id) DO UPDATE SET customer_id = excluded.customer_id, currency = excluded.currency, \
     total_minor = excluded.total_minor, status = excluded.status, placed_at_ms = excluded.placed_at_ms, \
     cancelled_at_ms = excluded.cancelled_at_ms, cancel_reason = excluded.cancel_reason, \
     shipped_at_ms = excluded.shipped_at_ms, carrier = excluded.carrier, tracking_number = excluded.tracking_number, \
     captured_minor = excluded.captured_minor, refunded_minor = excluded.refunded_minor, \
     last_event_id = excluded.last_event_id, last_event_ms = excluded.last_event_ms";
const UPSERT_CUSTOMER: &str = "INSERT INTO projector_customers (customer_id, email, name, registered_at_ms, \
     order_count, lifetime_value_minor, last_event_id, last_event_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
     ON CONFLICT (customer_id) DO UPDATE SET email = excluded.email, name = excluded.name, \
     registered_at_ms = excluded.registered_at_ms, order_count = excluded.order_count, \
     lifetime_value_minor = excluded.lifetime_value_minor, last_event_id = excluded.last_event_id, \
     last_event_ms = excluded.last_event_ms";
const UPSERT_PAYMENT: &str = "INSERT INTO projector_payments (payment_id, order_id, currency, status, \
     authorized_minor, captured_minor, refunded_minor, failure_reason, last_event_id, last_event_ms) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
     ON CONFLICT (payment_id) DO UPDATE SET order_id = excluded.order_id, currency = excluded.currency, \
     status = excluded.status, authorized_minor = excluded.authorized_minor, captured_minor = excluded.captured_minor, \
     refunded_minor = excluded.refunded_minor, failure_reason = excluded.failure_reason, \
     last_event_id = excluded.last_event_id, last_event_ms = excluded.last_event_ms";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot apply the projector migrations")]
    Migrate(#[source] DbError),
    #[error("read model query failed")]
    Query(#[from] sqlx::Error),
    #[error("cannot save the consumer offsets")]
    Offsets(#[from] OffsetStoreError),
    #[error("the stored {column} is not valid: {value}")]
    Corrupt { column: &'static str, value: String },
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
        Some(Self {
            placed_at_ms: millis.parse().ok()?,
            order_id: order_id.to_owned(),
        })
    }

    pub fn after(order: &Order) -> Option<Self> {
        Some(Self {
            placed_at_ms: order.placed_at?.timestamp_millis(),
            order_id: order.order_id.clone(),
        })
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.placed_at_ms, self.order_id)
    }
}

/// The read model tables of one database.
#[derive(Debug, Clone)]
pub struct Store {
    db: Database,
    offsets: OffsetStore,
}

impl Store {
    pub fn new(db: Database) -> Self {
        Self {
            offsets: OffsetStore::new(db.clone()),
            db,
        }
    }

    /// Creates the read model and offset tables where missing.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.offsets.migrate().await?;
        self.db
            .migrate(&migrations())
            .await
            .map_err(StoreError::Migrate)
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    pub fn offsets(&self) -> &OffsetStore {
        &self.offsets
    }

    /// `true` once `group` has applied the event at `position`.
    pub async fn has_passed(&self, group: &str, position: &Position) -> Result<bool, StoreError> {
        Ok(self.offsets.has_passed(group, position).await?)
    }

    /// Applies `events` (in order, skipping ids applied before) and saves `positions` for
    /// `group`, in one transaction.
    pub async fn apply_batch(
        &self,
        group: &str,
        positions: &[PartitionOffset],
        events: &[Recorded],
    ) -> Result<Applied, StoreError> {
        let mut tx = self.db.pool().begin().await?;
        sqlx::query(LOCK).execute(&mut *tx).await?;
        let mut outcome = Applied::default();
        for event in events {
            if apply_one(&mut tx, event).await? {
                outcome.applied += 1;
            } else {
                outcome.duplicates += 1;
            }
        }
        OffsetStore::save(&mut tx, group, positions).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    pub async fn order(&self, order_id: &str) -> Result<Option<Order>, StoreError> {
        let mut conn = self.db.pool().acquire().await?;
        load_order(&mut conn, order_id).await
    }

    pub async fn customer(&self, customer_id: &str) -> Result<Option<Customer>, StoreError> {
        let mut conn = self.db.pool().acquire().await?;
        load_customer(&mut conn, customer_id).await
    }

    pub async fn payments_of_order(&self, order_id: &str) -> Result<Vec<Payment>, StoreError> {
        let sql = format!("SELECT {PAYMENT_COLUMNS} FROM projector_payments WHERE order_id = $1 ORDER BY payment_id");
        let rows = sqlx::query(&sql)
            .bind(order_id)
            .fetch_all(self.db.pool())
            .await?;
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
        let mut sql = format!(
            "SELECT {ORDER_COLUMNS} FROM projector_orders WHERE customer_id = $1 AND placed_at_ms IS NOT NULL"
        );
        let mut next = 2;
        if status.is_some() {
            sql.push_str(&format!(" AND status = ${next}"));
            next += 1;
        }
        if cursor.is_some() {
            sql.push_str(&format!(
                " AND (placed_at_ms < ${a} OR (placed_at_ms = ${a} AND order_id < ${b}))",
                a = next,
                b = next + 1
            ));
            next += 2;
        }
        sql.push_str(&format!(
            " ORDER BY placed_at_ms DESC, order_id DESC LIMIT ${next}"
        ));
        let mut query = sqlx::query(&sql).bind(customer_id);
        if let Some(status) = status {
            query = query.bind(status.as_str());
        }
        if let Some(cursor) = cursor {
            query = query
                .bind(cursor.placed_at_ms)
                .bind(cursor.order_id.clone());
        }
        let rows = query
            .bind(i64::from(limit))
            .fetch_all(self.db.pool())
            .await?;
        rows.iter().map(order_from).collect()
    }

    /// Every row and applied event id: what tests compare with the in-memory fold.
    pub async fn snapshot(&self) -> Result<ReadModel, StoreError> {
        let pool = self.db.pool();
        let mut model = ReadModel::default();
        for row in sqlx::query(&format!("SELECT {ORDER_COLUMNS} FROM projector_orders"))
            .fetch_all(pool)
            .await?
        {
            let order = order_from(&row)?;
            model.orders.insert(order.order_id.clone(), order);
        }
        for row in sqlx::query(&format!(
            "SELECT {CUSTOMER_COLUMNS} FROM projector_customers"
        ))
        .fetch_all(pool)
        .await?
        {
            let customer = customer_from(&row)?;
            model
                .customers
                .insert(customer.customer_id.clone(), customer);
        }
        for row in sqlx::query(&format!("SELECT {PAYMENT_COLUMNS} FROM projector_payments"))
            .fetch_all(pool)
            .await?
        {
            let payment = payment_from(&row)?;
            model.payments.insert(payment.payment_id.clone(), payment);
        }
        for row in sqlx::query("SELECT event_id FROM projector_applied_events")
            .fetch_all(pool)
            .await?
        {
            model.applied.insert(uuid(&row.try_get::<String, _>(0)?)?);
        }
        Ok(model)
    }
}

/// Applies one event in `conn`'s transaction; `false` when its id was applied before.
async fn apply_one(conn: &mut AnyConnection, event: &Recorded) -> Result<bool, StoreError> {
    let marked = sqlx::query(MARK_APPLIED)
        .bind(event.event_id().to_string())
        .execute(&mut *conn)
        .await?;
    if marked.rows_affected() == 0 {
        return Ok(false);
    }
    let fact = &event.fact;
    let order = match fact.order_id() {
        Some(id) => load_order(conn, id).await?,
        None => None,
    };
    let customer = match fact.customer_id(order.as_ref()) {
        Some(id) => load_customer(conn, id).await?,
        None => None,
    };
    let payment = match fact.payment_id() {
        Some(id) => load_payment(conn, id).await?,
        None => None,
    };
    let mut slice = Slice {
        order,
        customer,
        payment,
    };
    domain::apply(&mut slice, event);
    if let Some(order) = &slice.order {
        save_order(conn, order).await?;
    }
    if let Some(customer) = &slice.customer {
        save_customer(conn, customer).await?;
    }
    if let Some(payment) = &slice.payment {
        save_payment(conn, payment).await?;
    }
    Ok(true)
}

async fn load_order(conn: &mut AnyConnection, order_id: &str) -> Result<Option<Order>, StoreError> {
    let sql = format!("SELECT {ORDER_COLUMNS} FROM projector_orders WHERE order_id = $1");
    let row = sqlx::query(&sql)
        .bind(order_id)
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(order_from).transpose()
}

async fn load_customer(
    conn: &mut AnyConnection,
    customer_id: &str,
) -> Result<Option<Customer>, StoreError> {
    let sql = format!("SELECT {CUSTOMER_COLUMNS} FROM projector_customers WHERE customer_id = $1");
    let row = sqlx::query(&sql)
        .bind(customer_id)
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(customer_from).transpose()
}

async fn load_payment(
    conn: &mut AnyConnection,
    payment_id: &str,
) -> Result<Option<Payment>, StoreError> {
    let sql = format!("SELECT {PAYMENT_COLUMNS} FROM projector_payments WHERE payment_id = $1");
    let row = sqlx::query(&sql)
        .bind(payment_id)
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(payment_from).transpose()
}

async fn save_order(conn: &mut AnyConnection, o: &Order) -> Result<(), StoreError> {
    sqlx::query(UPSERT_ORDER)
        .bind(o.order_id.clone())
        .bind(o.customer_id.clone())
        .bind(o.currency.clone())
        .bind(o.total_minor)
        .bind(o.status().as_str())
        .bind(o.placed_at.map(|t| t.timestamp_millis()))
        .bind(o.cancelled_at.map(|t| t.timestamp_millis()))
        .bind(o.cancel_reason.clone())
        .bind(o.shipped_at.map(|t| t.timestamp_millis()))
        .bind(o.carrier.clone())
        .bind(o.tracking_number.clone())
        .bind(o.captured_minor)
        .bind(o.refunded_minor)
        .bind(o.last_event.event_id.to_string())
        .bind(o.last_event.time.timestamp_millis())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn save_customer(conn: &mut AnyConnection, c: &Customer) -> Result<(), StoreError> {
    sqlx::query(UPSERT_CUSTOMER)
        .bind(c.customer_id.clone())
        .bind(c.email.clone())
        .bind(c.name.clone())
        .bind(c.registered_at.map(|t| t.timestamp_millis()))
        .bind(c.order_count)
        .bind(c.lifetime_value_minor)
        .bind(c.last_event.event_id.to_string())
        .bind(c.last_event.time.timestamp_millis())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn save_payment(conn: &mut AnyConnection, p: &Payment) -> Result<(), StoreError> {
    sqlx::query(UPSERT_PAYMENT)
        .bind(p.payment_id.clone())
        .bind(p.order_id.clone())
        .bind(p.currency.clone())
        .bind(p.status().as_str())
        .bind(p.authorized_minor)
        .bind(p.captured_minor)
        .bind(p.refunded_minor)
        .bind(p.failure_reason.clone())
        .bind(p.last_event.event_id.to_string())
        .bind(p.last_event.time.timestamp_millis())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

fn time(column: &'static str, millis: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(millis).ok_or(StoreError::Corrupt {
        column,
        value: millis.to_string(),
    })
}

fn optional_time(row: &AnyRow, column: &'static str) -> Result<Option<DateTime<Utc>>, StoreError> {
    row.try_get::<Option<i64>, _>(column)?
        .map(|millis| time(column, millis))
        .transpose()
}

fn uuid(text: &str) -> Result<Uuid, StoreError> {
    Uuid::from_str(text).map_err(|_| StoreError::Corrupt {
        column: "event_id",
        value: text.to_owned(),
    })
}

fn stamp(row: &AnyRow) -> Result<Stamp, StoreError> {
    let id: String = row.try_get("last_event_id")?;
    Ok(Stamp {
        event_id: uuid(&id)?,
        time: time("last_event_ms", row.try_get("last_event_ms")?)?,
    })
}

fn order_from(row: &AnyRow) -> Result<Order, StoreError> {
    Ok(Order {
        order_id: row.try_get("order_id")?,
        customer_id: row.try_get("customer_id")?,
        currency: row.try_get("currency")?,
        total_minor: row.try_get("total_minor")?,
        placed_at: optional_time(row, "placed_at_ms")?,
        cancelled_at: optional_time(row, "cancelled_at_ms")?,
        cancel_reason: row.try_get("cancel_reason")?,
        shipped_at: optional_time(row, "shipped_at_ms")?,
        carrier: row.try_get("carrier")?,
        tracking_number: row.try_get("tracking_number")?,
        captured_minor: row.try_get("captured_minor")?,
        refunded_minor: row.try_get("refunded_minor")?,
        last_event: stamp(row)?,
    })
}

fn customer_from(row: &AnyRow) -> Result<Customer, StoreError> {
    Ok(Customer {
        customer_id: row.try_get("customer_id")?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        registered_at: optional_time(row, "registered_at_ms")?,
        order_count: row.try_get("order_count")?,
        lifetime_value_minor: row.try_get("lifetime_value_minor")?,
        last_event: stamp(row)?,
    })
}

fn payment_from(row: &AnyRow) -> Result<Payment, StoreError> {
    Ok(Payment {
        payment_id: row.try_get("payment_id")?,
        order_id: row.try_get("order_id")?,
        currency: row.try_get("currency")?,
        authorized_minor: row.try_get("authorized_minor")?,
        captured_minor: row.try_get("captured_minor")?,
        refunded_minor: row.try_get("refunded_minor")?,
        failure_reason: row.try_get("failure_reason")?,
        last_event: stamp(row)?,
    })
}
