//! An upstream service writing its business change and the event describing it in one
//! transaction: the transactional outbox. `eventline-outbox-relay` publishes the event afterwards.
//!
//! ```sh
//! psql "$DATABASE_URL" -f producers/outbox-relay/sql/outbox.sql
//! DATABASE_URL=postgres://… cargo run -p eventline-outbox-relay --example upstream_service
//! ```
//!
//! Each function updates the order's own row in the same transaction as it writes the outbox
//! row. That row lock serializes writes to one order, so its outbox rows get ids in commit order,
//! which is the order the relay publishes them in.

use anyhow::Context as _;
use serde_json::json;
use sqlx::postgres::PgPool;

/// The service's own table.
pub const SHOP_ORDERS_DDL: &str = "CREATE TABLE IF NOT EXISTS shop_orders (
    order_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, currency TEXT NOT NULL,
    total_minor BIGINT NOT NULL, status TEXT NOT NULL, placed_at TIMESTAMPTZ NOT NULL)";

/// One line of a new order.
pub struct Line<'a> {
    pub sku: &'a str,
    pub quantity: i32,
    pub unit_price_minor: i64,
}

/// Places an order and records `OrderPlaced`, atomically. Returns the event id.
pub async fn place_order(
    pool: &PgPool,
    order_id: &str,
    customer_id: &str,
    lines: &[Line<'_>],
) -> anyhow::Result<String> {
    let total_minor: i64 = lines.iter().map(|l| i64::from(l.quantity) * l.unit_price_minor).sum();
    let mut tx = pool.begin().await?;
    let placed_at_ms: i64 = sqlx::query_scalar(
        "INSERT INTO shop_orders (order_id, customer_id, currency, total_minor, status, placed_at)
         VALUES ($1, $2, 'EUR', $3, 'placed', date_trunc('milliseconds', now()))
         RETURNING (extract(epoch FROM placed_at) * 1000)::bigint",
    )
    .bind(order_id)
    .bind(customer_id)
    .bind(total_minor)
    .fetch_one(&mut *tx)
    .await
    .context("cannot insert the order")?;
    let payload = json!({
        "order_id": order_id,
        "customer_id": customer_id,
        "currency": "EUR",
        "total_minor": total_minor,
        "lines": lines.iter().map(|l| json!({"sku": l.sku, "quantity": l.quantity, "unit_price_minor": l.unit_price_minor})).collect::<Vec<_>>(),
        "placed_at": placed_at_ms,
    });
    let event_id = record(&mut tx, "OrderPlaced", order_id, &payload).await?;
    tx.commit().await?;
    Ok(event_id)
}

/// Ships an order and records `OrderShipped`, atomically. Returns the event id.
pub async fn ship_order(pool: &PgPool, order_id: &str, carrier: &str) -> anyhow::Result<String> {
    let mut tx = pool.begin().await?;
    let shipped_at_ms: i64 = sqlx::query_scalar(
        "UPDATE shop_orders SET status = 'shipped' WHERE order_id = $1
         RETURNING (extract(epoch FROM date_trunc('milliseconds', now())) * 1000)::bigint",
    )
    .bind(order_id)
    .fetch_optional(&mut *tx)
    .await?
    .with_context(|| format!("no order {order_id}"))?;
    let payload = json!({"order_id": order_id, "carrier": carrier, "shipped_at": shipped_at_ms});
    let event_id = record(&mut tx, "OrderShipped", order_id, &payload).await?;
    tx.commit().await?;
    Ok(event_id)
}

/// Writes one outbox row inside the caller's transaction.
async fn record(
    tx: &mut sqlx::PgConnection,
    event_type: &str,
    aggregate_id: &str,
    payload: &serde_json::Value,
) -> anyhow::Result<String> {
    let event_id = sqlx::query_scalar(
        "INSERT INTO eventline_outbox (event_type, aggregate_id, payload, source)
         VALUES ($1, $2, $3::jsonb, 'urn:shop:orders') RETURNING event_id::text",
    )
    .bind(event_type)
    .bind(aggregate_id)
    .bind(payload.to_string())
    .fetch_one(tx)
    .await
    .context("cannot write the outbox row")?;
    Ok(event_id)
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL").context("set DATABASE_URL to the service's PostgreSQL")?;
    let pool = PgPool::connect(&url).await?;
    sqlx::query(SHOP_ORDERS_DDL).execute(&pool).await?;
    let order_id = format!("o-{}", std::process::id());
    let placed =
        place_order(&pool, &order_id, "c-1", &[Line { sku: "BOOK-1", quantity: 2, unit_price_minor: 1250 }]).await?;
    let shipped = ship_order(&pool, &order_id, "DHL").await?;
    println!("order {order_id}: OrderPlaced {placed}, OrderShipped {shipped} are in the outbox");
    Ok(())
}
