//! The JSON shapes of the query API.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::domain::{Customer, Order, OrderStatus, Payment, PaymentStatus, Stamp};

#[derive(Debug, Serialize)]
pub struct LastEvent {
    pub id: Uuid,
    pub time: DateTime<Utc>,
}

impl From<Stamp> for LastEvent {
    fn from(stamp: Stamp) -> Self {
        Self { id: stamp.event_id, time: stamp.time }
    }
}

#[derive(Debug, Serialize)]
pub struct PaymentView {
    pub payment_id: String,
    pub status: PaymentStatus,
    pub currency: Option<String>,
    pub authorized_minor: i64,
    pub captured_minor: i64,
    pub refunded_minor: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
}

impl From<Payment> for PaymentView {
    fn from(p: Payment) -> Self {
        Self {
            status: p.status(),
            payment_id: p.payment_id,
            currency: p.currency,
            authorized_minor: p.authorized_minor,
            captured_minor: p.captured_minor,
            refunded_minor: p.refunded_minor,
            failure_reason: p.failure_reason,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct OrderView {
    pub order_id: String,
    pub customer_id: Option<String>,
    pub status: OrderStatus,
    pub currency: Option<String>,
    pub total_minor: i64,
    pub captured_minor: i64,
    pub refunded_minor: i64,
    pub placed_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancelled_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancel_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shipped_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub carrier: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracking_number: Option<String>,
    /// Only in `GET /v1/orders/{id}`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub payments: Vec<PaymentView>,
    pub last_event: LastEvent,
}

impl OrderView {
    pub fn new(o: Order, payments: Vec<Payment>) -> Self {
        Self {
            status: o.status(),
            order_id: o.order_id,
            customer_id: o.customer_id,
            currency: o.currency,
            total_minor: o.total_minor,
            captured_minor: o.captured_minor,
            refunded_minor: o.refunded_minor,
            placed_at: o.placed_at,
            cancelled_at: o.cancelled_at,
            cancel_reason: o.cancel_reason,
            shipped_at: o.shipped_at,
            carrier: o.carrier,
            tracking_number: o.tracking_number,
            payments: payments.into_iter().map(PaymentView::from).collect(),
            last_event: o.last_event.into(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct CustomerView {
    pub customer_id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub registered_at: Option<DateTime<Utc>>,
    pub order_count: i64,
    pub lifetime_value_minor: i64,
    pub last_event: LastEvent,
}

impl From<Customer> for CustomerView {
    fn from(c: Customer) -> Self {
        Self {
            customer_id: c.customer_id,
            email: c.email,
            name: c.name,
            registered_at: c.registered_at,
            order_count: c.order_count,
            lifetime_value_minor: c.lifetime_value_minor,
            last_event: c.last_event.into(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct OrderPage {
    pub orders: Vec<OrderView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}
