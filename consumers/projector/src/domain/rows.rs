//! The rows of the read model: orders, customers, payments.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

/// The last event applied to a row: its id and time (milliseconds, as stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Stamp {
    pub time: DateTime<Utc>,
    pub event_id: Uuid,
}

impl Stamp {
    /// `time` truncated to milliseconds, the precision the database keeps.
    pub fn new(event_id: Uuid, time: DateTime<Utc>) -> Self {
        let time = DateTime::from_timestamp_millis(time.timestamp_millis()).unwrap_or(time);
        Self { time, event_id }
    }

    /// Keeps the greater of the two (by time, then id).
    pub fn merge(&mut self, other: Stamp) {
        if other > *self {
            *self = other;
        }
    }
}

/// Where an order is in its lifecycle, derived from its facts: `cancelled` wins over
/// `shipped`, which wins over `paid` (some payment captured), then `placed`; `pending` is a
/// stub whose `OrderPlaced` has not arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Pending,
    Placed,
    Paid,
    Shipped,
    Cancelled,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 5] =
        [OrderStatus::Pending, OrderStatus::Placed, OrderStatus::Paid, OrderStatus::Shipped, OrderStatus::Cancelled];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Placed => "placed",
            OrderStatus::Paid => "paid",
            OrderStatus::Shipped => "shipped",
            OrderStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == text)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Order {
    pub order_id: String,
    pub customer_id: Option<String>,
    pub currency: Option<String>,
    pub total_minor: i64,
    pub placed_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub cancel_reason: Option<String>,
    pub shipped_at: Option<DateTime<Utc>>,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub captured_minor: i64,
    pub refunded_minor: i64,
    pub last_event: Stamp,
}

impl Order {
    pub fn stub(order_id: &str, stamp: Stamp) -> Self {
        Self {
            order_id: order_id.to_owned(),
            customer_id: None,
            currency: None,
            total_minor: 0,
            placed_at: None,
            cancelled_at: None,
            cancel_reason: None,
            shipped_at: None,
            carrier: None,
            tracking_number: None,
            captured_minor: 0,
            refunded_minor: 0,
            last_event: stamp,
        }
    }

    pub fn status(&self) -> OrderStatus {
        if self.cancelled_at.is_some() {
            OrderStatus::Cancelled
        } else if self.placed_at.is_none() {
            OrderStatus::Pending
        } else if self.shipped_at.is_some() {
            OrderStatus::Shipped
        } else if self.captured_minor > 0 {
            OrderStatus::Paid
        } else {
            OrderStatus::Placed
        }
    }

    /// Captured minus refunded: what the order adds to its customer's lifetime value.
    pub fn net_paid_minor(&self) -> i64 {
        self.captured_minor - self.refunded_minor
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Customer {
    pub customer_id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub registered_at: Option<DateTime<Utc>>,
    /// Orders placed by this customer.
    pub order_count: i64,
    /// Sum over the customer's placed orders of captured minus refunded, in minor units.
    pub lifetime_value_minor: i64,
    pub last_event: Stamp,
}

impl Customer {
    pub fn stub(customer_id: &str, stamp: Stamp) -> Self {
        Self {
            customer_id: customer_id.to_owned(),
            email: None,
            name: None,
            registered_at: None,
            order_count: 0,
            lifetime_value_minor: 0,
            last_event: stamp,
        }
    }
}

/// Where a payment is, derived from its facts: refunded (any refund) wins over captured, then
/// failed, then authorized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Authorized,
    Captured,
    Failed,
    Refunded,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Authorized => "authorized",
            PaymentStatus::Captured => "captured",
            PaymentStatus::Failed => "failed",
            PaymentStatus::Refunded => "refunded",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Payment {
    pub payment_id: String,
    pub order_id: String,
    pub currency: Option<String>,
    pub authorized_minor: i64,
    pub captured_minor: i64,
    pub refunded_minor: i64,
    pub failure_reason: Option<String>,
    pub last_event: Stamp,
}

impl Payment {
    pub fn new(payment_id: &str, order_id: &str, stamp: Stamp) -> Self {
        Self {
            payment_id: payment_id.to_owned(),
            order_id: order_id.to_owned(),
            currency: None,
            authorized_minor: 0,
            captured_minor: 0,
            refunded_minor: 0,
            failure_reason: None,
            last_event: stamp,
        }
    }

    pub fn status(&self) -> PaymentStatus {
        if self.refunded_minor > 0 {
            PaymentStatus::Refunded
        } else if self.captured_minor > 0 {
            PaymentStatus::Captured
        } else if self.failure_reason.is_some() {
            PaymentStatus::Failed
        } else {
            PaymentStatus::Authorized
        }
    }
}
