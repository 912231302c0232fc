//! Applying a batch in a fixed handful of statements, whatever its size: claim the events'
//! (time, id) pairs (on PostgreSQL an insert answering with the new ones; on SQLite a lookup
//! of the ones applied before, then an insert of the others), load the rows those events touch
//! (one `IN` query per table), run the pure fold ([`ReadModel::apply`]) over them in memory,
//! then upsert the rows the events touched. Per event that is no round trip at all, where
//! loading and saving each event's rows took four to seven.
//!
//! The fold sees every row an event can touch: orders and payments by the ids in the events,
//! customers by the ids in the events plus the customers of the loaded orders (a capture or a
//! refund reaches the customer of its order; an order placed in this batch names its customer
//! in the event). So the rows written are the rows the one-event-at-a-time fold would write.

use std::collections::{BTreeMap, BTreeSet};

use eventline_common::db::Backend;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, Row as _};

use super::columns::{customer_from, order_from, payment_from};
use super::tables::{ListStatement, RowsStatement};
use super::{Applied, Store, StoreError};
use crate::domain::{Customer, Order, Payment, ReadModel, Recorded};

type AnyQuery<'q> = Query<'q, Any, AnyArguments<'q>>;

impl Store {
    /// Applies `events` in order on `conn` (inside the batch's transaction), skipping events
    /// applied before or earlier in the batch.
    pub(super) async fn apply_events(
        &self,
        conn: &mut AnyConnection,
        events: &[Recorded],
    ) -> Result<Applied, StoreError> {
        // Claim the batch's (time, id) pairs; an event applied before, or twice in the batch,
        // is a duplicate.
        let backend = self.db.backend();
        let stamps: Vec<(i64, String)> =
            events.iter().map(|e| (e.stamp.time.timestamp_millis(), e.event_id().to_string())).collect();
        let unique: Vec<&(i64, String)> = stamps.iter().collect::<BTreeSet<_>>().into_iter().collect();
        let mut claimed = match backend {
            Backend::Postgres => self.claim_returning(conn, &unique).await?,
            Backend::Sqlite => self.claim_after_lookup(conn, &unique).await?,
        };
        if self.has_legacy_applied(conn).await? {
            let ids: Vec<String> = keys(claimed.iter().map(|(_, id)| id.as_str()));
            for row in rows_among(conn, backend, &self.tables.legacy_applied, &ids).await? {
                let id: String = row.try_get(0)?;
                claimed.retain(|(_, claimed_id)| *claimed_id != id);
            }
        }
        let mut fresh = Vec::with_capacity(events.len());
        for (event, stamp) in events.iter().zip(&stamps) {
            // The first event with a claimed stamp is applied; a repeat in the batch is a duplicate.
            if claimed.remove(stamp) {
                fresh.push(event);
            }
        }
        let outcome = Applied { applied: fresh.len(), duplicates: events.len() - fresh.len() };
        if fresh.is_empty() {
            return Ok(outcome);
        }

        let order_ids = keys(fresh.iter().filter_map(|e| e.fact.order_id()));
        let orders = load(conn, backend, &self.tables.orders_among, &order_ids, order_from).await?;
        let mut customer_ids: BTreeSet<&str> = fresh.iter().filter_map(|e| e.fact.customer_id(None)).collect();
        customer_ids.extend(orders.values().filter_map(|o| o.customer_id.as_deref()));
        let customer_ids = keys(customer_ids);
        let customers = load(conn, backend, &self.tables.customers_among, &customer_ids, customer_from).await?;
        let payment_ids = keys(fresh.iter().filter_map(|e| e.fact.payment_id()));
        let payments = load(conn, backend, &self.tables.payments_among, &payment_ids, payment_from).await?;

        // The fold, noting the rows each event touches as the fold itself chooses them (the
        // rows as they are just before the event); those are the rows written.
        let mut model = ReadModel { orders, customers, payments, applied: BTreeSet::new() };
        let mut touched = Touched::default();
        for event in &fresh {
            let fact = &event.fact;
            let order = fact.order_id().and_then(|id| model.orders.get(id));
            touched.orders.extend(fact.order_id().map(str::to_owned));
            touched.customers.extend(fact.customer_id(order).map(str::to_owned));
            touched.payments.extend(fact.payment_id().map(str::to_owned));
            model.apply(event);
        }

        let orders = rows_of(&model.orders, &touched.orders);
        insert_rows(conn, backend, &self.tables.upsert_orders, &orders, bind_order).await?;
        let customers = rows_of(&model.customers, &touched.customers);
        insert_rows(conn, backend, &self.tables.upsert_customers, &customers, bind_customer).await?;
        let payments = rows_of(&model.payments, &touched.payments);
        insert_rows(conn, backend, &self.tables.upsert_payments, &payments, bind_payment).await?;
        Ok(outcome)
    }
}

impl Store {
    /// Claims `stamps` with one insert per chunk that answers with the pairs it added (the new
    /// ones): PostgreSQL checks the conflicts in the index as it inserts.
    async fn claim_returning(
        &self,
        conn: &mut AnyConnection,
        stamps: &[&(i64, String)],
    ) -> Result<BTreeSet<(i64, String)>, StoreError> {
        let mut claimed = BTreeSet::new();
        for chunk in stamps.chunks(self.tables.claim_applied_returning.rows_per_statement()) {
            let sql = self.tables.claim_applied_returning.sql(Backend::Postgres, chunk.len());
            for row in bind_stamps(sqlx::query(&sql), chunk).fetch_all(&mut *conn).await? {
                claimed.insert((row.try_get::<i64, _>(0)?, row.try_get::<String, _>(1)?));
            }
        }
        Ok(claimed)
    }

    /// Claims `stamps` by looking up which were applied before (usually none, so few rows come
    /// back), then inserting the others, under the write lock. On SQLite this costs about a
    /// third of an insert answering with every new pair: sqlx-sqlite copies each returned value.
    async fn claim_after_lookup(
        &self,
        conn: &mut AnyConnection,
        stamps: &[&(i64, String)],
    ) -> Result<BTreeSet<(i64, String)>, StoreError> {
        let mut claimed: BTreeSet<(i64, String)> = stamps.iter().map(|stamp| (*stamp).clone()).collect();
        for chunk in stamps.chunks(self.tables.applied_among.rows_per_statement()) {
            let sql = self.tables.applied_among.sql(Backend::Sqlite, chunk.len());
            for row in bind_stamps(sqlx::query(&sql), chunk).fetch_all(&mut *conn).await? {
                claimed.remove(&(row.try_get::<i64, _>(0)?, row.try_get::<String, _>(1)?));
            }
        }
        let new: Vec<&(i64, String)> = claimed.iter().collect();
        for chunk in new.chunks(self.tables.claim_applied.rows_per_statement()) {
            let sql = self.tables.claim_applied.sql(Backend::Sqlite, chunk.len());
            bind_stamps(sqlx::query(&sql), chunk).execute(&mut *conn).await?;
        }
        Ok(claimed)
    }
}

fn bind_stamps<'q>(mut query: AnyQuery<'q>, stamps: &[&'q (i64, String)]) -> AnyQuery<'q> {
    for (ms, id) in stamps {
        query = query.bind(*ms).bind(id.as_str());
    }
    query
}

fn keys<'a>(ids: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    ids.into_iter().collect::<BTreeSet<&str>>().into_iter().map(str::to_owned).collect()
}

/// The keys of the rows a batch's events touched.
#[derive(Default)]
struct Touched {
    orders: BTreeSet<String>,
    customers: BTreeSet<String>,
    payments: BTreeSet<String>,
}

/// The rows of `model` whose key is in `touched`.
fn rows_of<'a, T>(model: &'a BTreeMap<String, T>, touched: &BTreeSet<String>) -> Vec<&'a T> {
    touched.iter().filter_map(|key| model.get(key)).collect()
}

/// The rows whose key is one of `keys`, by key.
async fn load<T: Keyed>(
    conn: &mut AnyConnection,
    backend: Backend,
    statement: &ListStatement,
    keys: &[String],
    from_row: fn(&AnyRow) -> Result<T, StoreError>,
) -> Result<BTreeMap<String, T>, StoreError> {
    let mut rows = BTreeMap::new();
    for row in rows_among(conn, backend, statement, keys).await? {
        let row = from_row(&row)?;
        rows.insert(row.key().to_owned(), row);
    }
    Ok(rows)
}

/// A row's primary key.
trait Keyed {
    fn key(&self) -> &str;
}

impl Keyed for Order {
    fn key(&self) -> &str {
        &self.order_id
    }
}

impl Keyed for Customer {
    fn key(&self) -> &str {
        &self.customer_id
    }
}

impl Keyed for Payment {
    fn key(&self) -> &str {
        &self.payment_id
    }
}

/// The rows whose key is one of `keys`, a statement per [`ListStatement::KEYS_PER_STATEMENT`].
async fn rows_among(
    conn: &mut AnyConnection,
    backend: Backend,
    statement: &ListStatement,
    keys: &[String],
) -> Result<Vec<AnyRow>, StoreError> {
    let mut rows = Vec::new();
    for chunk in keys.chunks(ListStatement::KEYS_PER_STATEMENT) {
        let sql = statement.sql(backend, chunk.len());
        let mut query = sqlx::query(&sql);
        for key in chunk {
            query = query.bind(key.as_str());
        }
        rows.extend(query.fetch_all(&mut *conn).await?);
    }
    Ok(rows)
}

/// Inserts (or upserts) `rows`, as many per statement as the statement takes.
async fn insert_rows<'r, T>(
    conn: &mut AnyConnection,
    backend: Backend,
    statement: &RowsStatement,
    rows: &'r [T],
    bind: impl for<'q> Fn(AnyQuery<'q>, &'r T) -> AnyQuery<'q>,
) -> Result<(), StoreError> {
    for chunk in rows.chunks(statement.rows_per_statement()) {
        let sql = statement.sql(backend, chunk.len());
        let mut query = sqlx::query(&sql);
        for row in chunk {
            query = bind(query, row);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

fn millis(time: Option<chrono::DateTime<chrono::Utc>>) -> Option<i64> {
    time.map(|t| t.timestamp_millis())
}

fn bind_order<'q>(query: AnyQuery<'q>, o: &&Order) -> AnyQuery<'q> {
    query
        .bind(o.order_id.clone())
        .bind(o.customer_id.clone())
        .bind(o.currency.clone())
        .bind(o.total_minor)
        .bind(o.status().as_str())
        .bind(millis(o.placed_at))
        .bind(millis(o.cancelled_at))
        .bind(o.cancel_reason.clone())
        .bind(millis(o.shipped_at))
        .bind(o.carrier.clone())
        .bind(o.tracking_number.clone())
        .bind(o.captured_minor)
        .bind(o.refunded_minor)
        .bind(o.last_event.event_id.to_string())
        .bind(o.last_event.time.timestamp_millis())
}

fn bind_customer<'q>(query: AnyQuery<'q>, c: &&Customer) -> AnyQuery<'q> {
    query
        .bind(c.customer_id.clone())
        .bind(c.email.clone())
        .bind(c.name.clone())
        .bind(millis(c.registered_at))
        .bind(c.order_count)
        .bind(c.lifetime_value_minor)
        .bind(c.last_event.event_id.to_string())
        .bind(c.last_event.time.timestamp_millis())
}

fn bind_payment<'q>(query: AnyQuery<'q>, p: &&Payment) -> AnyQuery<'q> {
    query
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
}
