//! The rules of the read model computed another way: straight from the list of events, row
//! by row, without `apply` and without rows. The fold must agree with it; a rule the fold gets
//! consistently wrong (the same for every interleaving) passes the interleaving property but
//! not this one.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use eventline_common::events::OrderPlaced;

use crate::domain::{Fact, OrderStatus, PaymentStatus, ReadModel, Recorded, Stamp};

/// What a user reads about an order, a customer or a payment: the fields the rules decide.
#[derive(Debug, PartialEq)]
pub(super) struct OrderView {
    pub(super) customer_id: Option<String>,
    pub(super) total_minor: i64,
    pub(super) status: OrderStatus,
    pub(super) cancelled_at: Option<DateTime<Utc>>,
    pub(super) cancel_reason: Option<String>,
    pub(super) shipped_at: Option<DateTime<Utc>>,
    pub(super) captured_minor: i64,
    pub(super) refunded_minor: i64,
    pub(super) last_event: Stamp,
}

#[derive(Debug, PartialEq)]
pub(super) struct CustomerView {
    pub(super) order_count: i64,
    pub(super) lifetime_value_minor: i64,
    pub(super) email: Option<String>,
    pub(super) registered: bool,
    pub(super) last_event: Stamp,
}

#[derive(Debug, PartialEq)]
pub(super) struct PaymentView {
    pub(super) status: PaymentStatus,
    pub(super) authorized_minor: i64,
    pub(super) captured_minor: i64,
    pub(super) refunded_minor: i64,
    pub(super) last_event: Stamp,
}

#[derive(Debug, PartialEq)]
pub(super) struct Views {
    pub(super) orders: BTreeMap<String, OrderView>,
    pub(super) customers: BTreeMap<String, CustomerView>,
    pub(super) payments: BTreeMap<String, PaymentView>,
    pub(super) applied: BTreeSet<Stamp>,
}

/// The fold's rows, seen as views.
pub(super) fn views_of(model: &ReadModel) -> Views {
    Views {
        orders: model
            .orders
            .iter()
            .map(|(id, o)| {
                let view = OrderView {
                    customer_id: o.customer_id.clone(),
                    total_minor: o.total_minor,
                    status: o.status(),
                    cancelled_at: o.cancelled_at,
                    cancel_reason: o.cancel_reason.clone(),
                    shipped_at: o.shipped_at,
                    captured_minor: o.captured_minor,
                    refunded_minor: o.refunded_minor,
                    last_event: o.last_event,
                };
                (id.clone(), view)
            })
            .collect(),
        customers: model
            .customers
            .iter()
            .map(|(id, c)| {
                let view = CustomerView {
                    order_count: c.order_count,
                    lifetime_value_minor: c.lifetime_value_minor,
                    email: c.email.clone(),
                    registered: c.registered_at.is_some(),
                    last_event: c.last_event,
                };
                (id.clone(), view)
            })
            .collect(),
        payments: model
            .payments
            .iter()
            .map(|(id, p)| {
                let view = PaymentView {
                    status: p.status(),
                    authorized_minor: p.authorized_minor,
                    captured_minor: p.captured_minor,
                    refunded_minor: p.refunded_minor,
                    last_event: p.last_event,
                };
                (id.clone(), view)
            })
            .collect(),
        applied: model.applied.clone(),
    }
}

/// The rules of `domain`'s docs computed straight from the list of events, row by row, with
/// no `apply` and no rows: each event once (by id and time); an order placed by the first
/// `OrderPlaced` for it; cancelled wins over shipped over paid over placed; the first
/// cancellation and shipment count; a customer counts the orders it placed and their
/// captured minus refunded money, whenever that arrived; the email of the first
/// registration or any later change, whichever came last; `last_event` the greatest stamp of
/// the events that touched the row.
pub(super) fn oracle(events: &[Recorded]) -> Views {
    fn latest(stamps: impl Iterator<Item = Stamp>) -> Stamp {
        stamps.max().expect("a row exists because an event touched it")
    }

    let mut applied = BTreeSet::new();
    let events: Vec<&Recorded> = events.iter().filter(|e| applied.insert(e.stamp)).collect();

    let mut order_ids = BTreeSet::new();
    let mut payment_ids = BTreeSet::new();
    let mut customer_ids = BTreeSet::new();
    for event in &events {
        let (order, payment, customer) = match &event.fact {
            Fact::OrderPlaced(e) => (Some(&e.order_id), None, None),
            Fact::OrderCancelled(e) => (Some(&e.order_id), None, None),
            Fact::OrderShipped(e) => (Some(&e.order_id), None, None),
            Fact::PaymentCaptured(e) => (Some(&e.order_id), Some(&e.payment_id), None),
            Fact::PaymentRefunded(e) => (Some(&e.order_id), Some(&e.payment_id), None),
            Fact::PaymentAuthorized(e) => (None, Some(&e.payment_id), None),
            Fact::PaymentFailed(e) => (None, Some(&e.payment_id), None),
            Fact::CustomerRegistered(e) => (None, None, Some(&e.customer_id)),
            Fact::CustomerEmailChanged(e) => (None, None, Some(&e.customer_id)),
        };
        order_ids.extend(order.cloned());
        payment_ids.extend(payment.cloned());
        customer_ids.extend(customer.cloned());
    }

    let money = |o: &str| -> (i64, i64) {
        let captured = events.iter().filter_map(|e| match &e.fact {
            Fact::PaymentCaptured(c) if c.order_id == o => Some(c.amount_minor),
            _ => None,
        });
        let refunded = events.iter().filter_map(|e| match &e.fact {
            Fact::PaymentRefunded(r) if r.order_id == o => Some(r.amount_minor),
            _ => None,
        });
        (captured.sum(), refunded.sum())
    };
    // Each order's first `OrderPlaced`: the one that counts.
    let placed_by: BTreeMap<&str, (Stamp, &OrderPlaced)> = order_ids
        .iter()
        .filter_map(|o| {
            let first = events.iter().find_map(|e| match &e.fact {
                Fact::OrderPlaced(p) if &p.order_id == o => Some((e.stamp, p)),
                _ => None,
            })?;
            Some((o.as_str(), first))
        })
        .collect();

    let orders = order_ids
        .iter()
        .map(|o| {
            let first = placed_by.get(o.as_str());
            let cancellation = events.iter().find_map(|e| match &e.fact {
                Fact::OrderCancelled(c) if &c.order_id == o => Some(c),
                _ => None,
            });
            let shipment = events.iter().find_map(|e| match &e.fact {
                Fact::OrderShipped(s) if &s.order_id == o => Some(s),
                _ => None,
            });
            let (captured_minor, refunded_minor) = money(o);
            let status = match (cancellation, first, shipment) {
                (Some(_), _, _) => OrderStatus::Cancelled,
                (None, None, _) => OrderStatus::Pending,
                (None, Some(_), Some(_)) => OrderStatus::Shipped,
                (None, Some(_), None) if captured_minor > 0 => OrderStatus::Paid,
                (None, Some(_), None) => OrderStatus::Placed,
            };
            let touching = events.iter().filter(|e| match &e.fact {
                Fact::OrderPlaced(x) => &x.order_id == o,
                Fact::OrderCancelled(x) => &x.order_id == o,
                Fact::OrderShipped(x) => &x.order_id == o,
                Fact::PaymentCaptured(x) => &x.order_id == o,
                Fact::PaymentRefunded(x) => &x.order_id == o,
                _ => false,
            });
            let view = OrderView {
                customer_id: first.map(|(_, p)| p.customer_id.clone()),
                total_minor: first.map_or(0, |(_, p)| p.total_minor),
                status,
                cancelled_at: cancellation.map(|c| c.cancelled_at),
                cancel_reason: cancellation
                    .map(|c| serde_json::to_value(c.reason).unwrap().as_str().unwrap().to_owned()),
                shipped_at: shipment.map(|s| s.shipped_at),
                captured_minor,
                refunded_minor,
                last_event: latest(touching.map(|e| e.stamp)),
            };
            (o.clone(), view)
        })
        .collect();

    for (_, placed) in placed_by.values() {
        customer_ids.insert(placed.customer_id.clone());
    }
    let customers = customer_ids
        .iter()
        .map(|c| {
            let placed: Vec<(&str, Stamp)> = placed_by
                .iter()
                .filter(|(_, (_, p))| &p.customer_id == c)
                .map(|(o, (stamp, _))| (*o, *stamp))
                .collect();
            let registrations = events.iter().filter_map(|e| match &e.fact {
                Fact::CustomerRegistered(r) if &r.customer_id == c => Some((e.stamp, r)),
                _ => None,
            });
            let first_registration = registrations.clone().next();
            let changes = events.iter().filter_map(|e| match &e.fact {
                Fact::CustomerEmailChanged(x) if &x.customer_id == c => Some((e.stamp, x)),
                _ => None,
            });
            // Customer events share one topic and key: the last in the list is the last applied.
            let email = events.iter().rev().find_map(|e| match &e.fact {
                Fact::CustomerRegistered(r) if Some(e.stamp) == first_registration.map(|(s, _)| s) => {
                    Some(r.email.clone())
                }
                Fact::CustomerEmailChanged(x) if &x.customer_id == c => Some(x.new_email.clone()),
                _ => None,
            });
            let stamps =
                placed.iter().map(|(_, s)| *s).chain(registrations.map(|(s, _)| s)).chain(changes.map(|(s, _)| s));
            let view = CustomerView {
                order_count: placed.len() as i64,
                lifetime_value_minor: placed.iter().map(|(o, _)| money(o)).map(|(c, r)| c - r).sum(),
                email,
                registered: first_registration.is_some(),
                last_event: latest(stamps),
            };
            (c.clone(), view)
        })
        .collect();

    let payments = payment_ids
        .iter()
        .map(|p| {
            let mine: Vec<&Recorded> = events
                .iter()
                .copied()
                .filter(|e| match &e.fact {
                    Fact::PaymentAuthorized(x) => &x.payment_id == p,
                    Fact::PaymentCaptured(x) => &x.payment_id == p,
                    Fact::PaymentFailed(x) => &x.payment_id == p,
                    Fact::PaymentRefunded(x) => &x.payment_id == p,
                    _ => false,
                })
                .collect();
            let sum = |amount: fn(&Fact) -> Option<i64>| mine.iter().filter_map(|e| amount(&e.fact)).sum::<i64>();
            let authorized_minor = sum(|f| match f {
                Fact::PaymentAuthorized(x) => Some(x.amount_minor),
                _ => None,
            });
            let captured_minor = sum(|f| match f {
                Fact::PaymentCaptured(x) => Some(x.amount_minor),
                _ => None,
            });
            let refunded_minor = sum(|f| match f {
                Fact::PaymentRefunded(x) => Some(x.amount_minor),
                _ => None,
            });
            let any = |kind: fn(&Fact) -> bool| mine.iter().any(|e| kind(&e.fact));
            let status = if any(|f| matches!(f, Fact::PaymentRefunded(_))) {
                PaymentStatus::Refunded
            } else if any(|f| matches!(f, Fact::PaymentCaptured(_))) {
                PaymentStatus::Captured
            } else if any(|f| matches!(f, Fact::PaymentFailed(_))) {
                PaymentStatus::Failed
            } else {
                PaymentStatus::Authorized
            };
            let view = PaymentView {
                status,
                authorized_minor,
                captured_minor,
                refunded_minor,
                last_event: latest(mine.iter().map(|e| e.stamp)),
            };
            (p.clone(), view)
        })
        .collect();

    Views { orders, customers, payments, applied }
}

/// Totals over the whole model: orders placed, their customers' order counts and lifetime
/// value, and the money the orders hold.
pub(super) fn totals(views: &Views) -> (usize, i64, i64, i64) {
    let placed = views.orders.values().filter(|o| o.customer_id.is_some()).count();
    let counted = views.customers.values().map(|c| c.order_count).sum();
    let lifetime = views.customers.values().map(|c| c.lifetime_value_minor).sum();
    let net_of_placed =
        views.orders.values().filter(|o| o.customer_id.is_some()).map(|o| o.captured_minor - o.refunded_minor).sum();
    (placed, counted, lifetime, net_of_placed)
}
