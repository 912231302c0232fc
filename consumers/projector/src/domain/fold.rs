//! Applying one event to the rows it touches ([`apply`] over a [`Slice`]), and the in-memory
//! fold over a whole stream ([`ReadModel`]). The database store applies events with the same
//! [`apply`], loading and saving the slice in SQL.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use eventline_common::events::{
    CancellationReason, CustomerEmailChanged, CustomerRegistered, OrderCancelled, OrderPlaced, OrderShipped,
    PaymentAuthorized, PaymentCaptured, PaymentFailed, PaymentRefunded,
};
use uuid::Uuid;

use super::rows::{Customer, Order, Payment, Stamp};

/// One event of the catalog the projector reads.
#[derive(Debug, Clone, PartialEq)]
pub enum Fact {
    OrderPlaced(OrderPlaced),
    OrderCancelled(OrderCancelled),
    OrderShipped(OrderShipped),
    PaymentAuthorized(PaymentAuthorized),
    PaymentCaptured(PaymentCaptured),
    PaymentFailed(PaymentFailed),
    PaymentRefunded(PaymentRefunded),
    CustomerRegistered(CustomerRegistered),
    CustomerEmailChanged(CustomerEmailChanged),
}

impl Fact {
    /// The order whose row this event changes.
    pub fn order_id(&self) -> Option<&str> {
        match self {
            Fact::OrderPlaced(e) => Some(&e.order_id),
            Fact::OrderCancelled(e) => Some(&e.order_id),
            Fact::OrderShipped(e) => Some(&e.order_id),
            Fact::PaymentCaptured(e) => Some(&e.order_id),
            Fact::PaymentRefunded(e) => Some(&e.order_id),
            _ => None,
        }
    }

    /// The payment whose row this event changes.
    pub fn payment_id(&self) -> Option<&str> {
        match self {
            Fact::PaymentAuthorized(e) => Some(&e.payment_id),
            Fact::PaymentCaptured(e) => Some(&e.payment_id),
            Fact::PaymentFailed(e) => Some(&e.payment_id),
            Fact::PaymentRefunded(e) => Some(&e.payment_id),
            _ => None,
        }
    }

    /// The customer whose row this event changes, given the order row as it was before (a
    /// capture or refund reaches the customer only through a placed order).
    pub fn customer_id<'a>(&'a self, order: Option<&'a Order>) -> Option<&'a str> {
        match self {
            Fact::OrderPlaced(e) => Some(&e.customer_id),
            Fact::CustomerRegistered(e) => Some(&e.customer_id),
            Fact::CustomerEmailChanged(e) => Some(&e.customer_id),
            Fact::PaymentCaptured(_) | Fact::PaymentRefunded(_) => order.and_then(|o| o.customer_id.as_deref()),
            _ => None,
        }
    }
}

/// An event with its id (the idempotency key) and time, as delivered.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub stamp: Stamp,
    pub fact: Fact,
}

impl Recorded {
    pub fn new(event_id: Uuid, time: DateTime<Utc>, fact: Fact) -> Self {
        Self { stamp: Stamp::new(event_id, time), fact }
    }

    pub fn event_id(&self) -> Uuid {
        self.stamp.event_id
    }
}

/// The rows one event touches, as loaded before it is applied (`None`: no row yet).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Slice {
    pub order: Option<Order>,
    pub customer: Option<Customer>,
    pub payment: Option<Payment>,
}

fn reason_name(reason: CancellationReason) -> &'static str {
    match reason {
        CancellationReason::CustomerRequest => "CUSTOMER_REQUEST",
        CancellationReason::OutOfStock => "OUT_OF_STOCK",
        CancellationReason::PaymentFailed => "PAYMENT_FAILED",
        CancellationReason::FraudSuspected => "FRAUD_SUSPECTED",
        CancellationReason::Other => "OTHER",
    }
}

fn order<'a>(slice: &'a mut Option<Order>, id: &str, stamp: Stamp) -> &'a mut Order {
    let order = slice.get_or_insert_with(|| Order::stub(id, stamp));
    order.last_event.merge(stamp);
    order
}

fn customer<'a>(slice: &'a mut Option<Customer>, id: &str, stamp: Stamp) -> &'a mut Customer {
    let customer = slice.get_or_insert_with(|| Customer::stub(id, stamp));
    customer.last_event.merge(stamp);
    customer
}

fn payment<'a>(slice: &'a mut Option<Payment>, id: &str, order_id: &str, stamp: Stamp) -> &'a mut Payment {
    let payment = slice.get_or_insert_with(|| Payment::new(id, order_id, stamp));
    payment.last_event.merge(stamp);
    payment
}

/// Applies `event` to the rows it touches. The caller has checked that its id was not applied
/// before, and loaded the slice with [`Fact::order_id`], [`Fact::payment_id`] and
/// [`Fact::customer_id`] (the latter given the loaded order).
pub fn apply(slice: &mut Slice, event: &Recorded) {
    let stamp = event.stamp;
    match &event.fact {
        Fact::OrderPlaced(e) => {
            let row = order(&mut slice.order, &e.order_id, stamp);
            if row.placed_at.is_some() {
                return; // placed before (another event id for the same fact)
            }
            row.customer_id = Some(e.customer_id.clone());
            row.currency = Some(e.currency.clone());
            row.total_minor = e.total_minor;
            row.placed_at = Some(e.placed_at);
            let net = row.net_paid_minor();
            let buyer = customer(&mut slice.customer, &e.customer_id, stamp);
            buyer.order_count += 1;
            buyer.lifetime_value_minor += net;
        }
        Fact::OrderCancelled(e) => {
            let row = order(&mut slice.order, &e.order_id, stamp);
            if row.cancelled_at.is_none() {
                row.cancelled_at = Some(e.cancelled_at);
                row.cancel_reason = Some(reason_name(e.reason).to_owned());
            }
        }
        Fact::OrderShipped(e) => {
            let row = order(&mut slice.order, &e.order_id, stamp);
            if row.shipped_at.is_none() {
                row.shipped_at = Some(e.shipped_at);
                row.carrier = Some(e.carrier.clone());
                row.tracking_number = e.tracking_number.clone();
            }
        }
        Fact::PaymentAuthorized(e) => {
            let row = payment(&mut slice.payment, &e.payment_id, &e.order_id, stamp);
            row.authorized_minor += e.amount_minor;
            row.currency = Some(e.currency.clone());
        }
        Fact::PaymentFailed(e) => {
            let row = payment(&mut slice.payment, &e.payment_id, &e.order_id, stamp);
            row.failure_reason = Some(e.reason.clone());
        }
        Fact::PaymentCaptured(e) => {
            let row = payment(&mut slice.payment, &e.payment_id, &e.order_id, stamp);
            row.captured_minor += e.amount_minor;
            row.currency = Some(e.currency.clone());
            let row = order(&mut slice.order, &e.order_id, stamp);
            row.captured_minor += e.amount_minor;
            add_lifetime_value(slice, e.amount_minor);
        }
        Fact::PaymentRefunded(e) => {
            let row = payment(&mut slice.payment, &e.payment_id, &e.order_id, stamp);
            row.refunded_minor += e.amount_minor;
            row.currency = Some(e.currency.clone());
            let row = order(&mut slice.order, &e.order_id, stamp);
            row.refunded_minor += e.amount_minor;
            add_lifetime_value(slice, -e.amount_minor);
        }
        Fact::CustomerRegistered(e) => {
            let row = customer(&mut slice.customer, &e.customer_id, stamp);
            if row.registered_at.is_none() {
                row.registered_at = Some(e.registered_at);
                row.email = Some(e.email.clone());
                row.name = Some(e.name.clone());
            }
        }
        Fact::CustomerEmailChanged(e) => {
            customer(&mut slice.customer, &e.customer_id, stamp).email = Some(e.new_email.clone());
        }
    }
}

/// Money captured or refunded reaches the customer of a placed order. Its `last_event` does
/// not move: payments may arrive before the order names its customer, and the customer's
/// `last_event` must not depend on that interleaving.
fn add_lifetime_value(slice: &mut Slice, amount_minor: i64) {
    let placed_by = slice.order.as_ref().filter(|o| o.placed_at.is_some()).and_then(|o| o.customer_id.clone());
    if let Some(customer_id) = placed_by {
        let stamp = slice.order.as_ref().map(|o| o.last_event);
        let row = slice.customer.get_or_insert_with(|| {
            // The order's OrderPlaced created the customer; this is only reached if a store lost it.
            Customer::stub(&customer_id, stamp.unwrap_or_else(|| Stamp::new(Uuid::nil(), DateTime::UNIX_EPOCH)))
        });
        row.lifetime_value_minor += amount_minor;
    }
}

/// The whole read model in memory: the reference the database is tested against.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReadModel {
    pub orders: BTreeMap<String, Order>,
    pub customers: BTreeMap<String, Customer>,
    pub payments: BTreeMap<String, Payment>,
    /// The (time, id) of every event applied: a copy of an event carries both.
    pub applied: BTreeSet<Stamp>,
}

impl ReadModel {
    /// Applies `event` unless it (its id and time) was applied before; `true` when it was applied.
    pub fn apply(&mut self, event: &Recorded) -> bool {
        if !self.applied.insert(event.stamp) {
            return false;
        }
        let fact = &event.fact;
        let order = fact.order_id().and_then(|id| self.orders.get(id)).cloned();
        let customer_id = fact.customer_id(order.as_ref()).map(str::to_owned);
        let mut slice = Slice {
            customer: customer_id.as_deref().and_then(|id| self.customers.get(id)).cloned(),
            payment: fact.payment_id().and_then(|id| self.payments.get(id)).cloned(),
            order,
        };
        apply(&mut slice, event);
        if let Some(order) = slice.order {
            self.orders.insert(order.order_id.clone(), order);
        }
        if let Some(customer) = slice.customer {
            self.customers.insert(customer.customer_id.clone(), customer);
        }
        if let Some(payment) = slice.payment {
            self.payments.insert(payment.payment_id.clone(), payment);
        }
        true
    }

    /// The read model after `events`, in order.
    pub fn fold<'a>(events: impl IntoIterator<Item = &'a Recorded>) -> Self {
        let mut model = Self::default();
        for event in events {
            model.apply(event);
        }
        model
    }
}
