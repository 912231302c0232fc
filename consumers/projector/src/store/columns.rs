//! Reading rows back from SQL into the domain's rows.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::Row as _;
use uuid::Uuid;

use super::StoreError;
use crate::domain::{Customer, Order, Payment, Stamp};

fn time(column: &'static str, millis: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(millis).ok_or(StoreError::Corrupt { column, value: millis.to_string() })
}

fn optional_time(row: &AnyRow, column: &'static str) -> Result<Option<DateTime<Utc>>, StoreError> {
    row.try_get::<Option<i64>, _>(column)?.map(|millis| time(column, millis)).transpose()
}

pub(super) fn uuid(text: &str) -> Result<Uuid, StoreError> {
    Uuid::from_str(text).map_err(|_| StoreError::Corrupt { column: "event_id", value: text.to_owned() })
}

fn stamp(row: &AnyRow) -> Result<Stamp, StoreError> {
    let id: String = row.try_get("last_event_id")?;
    Ok(Stamp { event_id: uuid(&id)?, time: time("last_event_ms", row.try_get("last_event_ms")?)? })
}

pub(super) fn order_from(row: &AnyRow) -> Result<Order, StoreError> {
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

pub(super) fn customer_from(row: &AnyRow) -> Result<Customer, StoreError> {
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

pub(super) fn payment_from(row: &AnyRow) -> Result<Payment, StoreError> {
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
