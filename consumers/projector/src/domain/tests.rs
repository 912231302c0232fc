//! Given events, when folded, then rows: the read model's rules without I/O.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use chrono::{DateTime, Utc};
use eventline_common::events::*;
use uuid::Uuid;

use super::*;

fn at(millis: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(millis).unwrap()
}

fn rec(n: u128, fact: Fact) -> Recorded {
    Recorded::new(Uuid::from_u128(n), at(1_000 + n as i64), fact)
}

fn placed(order: &str, customer: &str, total: i64) -> Fact {
    Fact::OrderPlaced(OrderPlaced {
        order_id: order.into(),
        customer_id: customer.into(),
        lines: vec![OrderLine { sku: "sku-1".into(), quantity: 1, unit_price_minor: total }],
        currency: "EUR".into(),
        total_minor: total,
        placed_at: at(10),
    })
}

fn captured(payment: &str, order: &str, amount: i64) -> Fact {
    Fact::PaymentCaptured(PaymentCaptured {
        payment_id: payment.into(),
        order_id: order.into(),
        amount_minor: amount,
        currency: "EUR".into(),
        captured_at: at(20),
    })
}

fn refunded(payment: &str, order: &str, amount: i64) -> Fact {
    Fact::PaymentRefunded(PaymentRefunded {
        payment_id: payment.into(),
        order_id: order.into(),
        amount_minor: amount,
        currency: "EUR".into(),
        refunded_at: at(30),
    })
}

fn shipped(order: &str) -> Fact {
    Fact::OrderShipped(OrderShipped {
        order_id: order.into(),
        carrier: "DHL".into(),
        tracking_number: Some("T1".into()),
        shipped_at: at(40),
    })
}

fn cancelled(order: &str) -> Fact {
    Fact::OrderCancelled(OrderCancelled {
        order_id: order.into(),
        reason: CancellationReason::OutOfStock,
        cancelled_at: at(50),
    })
}

fn registered(customer: &str, email: &str) -> Fact {
    Fact::CustomerRegistered(CustomerRegistered {
        customer_id: customer.into(),
        email: email.into(),
        name: "Ada".into(),
        registered_at: at(5),
    })
}

fn email_changed(customer: &str, email: &str) -> Fact {
    Fact::CustomerEmailChanged(CustomerEmailChanged {
        customer_id: customer.into(),
        new_email: email.into(),
        changed_at: at(6),
    })
}

#[test]
fn an_order_goes_placed_paid_shipped_and_its_customer_counts_it() {
    // given
    let events = [
        rec(1, registered("c1", "ada@example.com")),
        rec(2, placed("o1", "c1", 500)),
        rec(3, captured("p1", "o1", 500)),
        rec(4, shipped("o1")),
    ];
    // when
    let model = ReadModel::fold(&events[..2]);
    // then
    assert_eq!(model.orders["o1"].status(), OrderStatus::Placed);
    let model = ReadModel::fold(&events[..3]);
    assert_eq!(model.orders["o1"].status(), OrderStatus::Paid);
    let model = ReadModel::fold(&events);
    let order = &model.orders["o1"];
    assert_eq!(order.status(), OrderStatus::Shipped);
    assert_eq!(order.last_event.event_id, Uuid::from_u128(4));
    let customer = &model.customers["c1"];
    assert_eq!((customer.order_count, customer.lifetime_value_minor), (1, 500));
    assert_eq!(customer.email.as_deref(), Some("ada@example.com"));
    assert_eq!(model.payments["p1"].status(), PaymentStatus::Captured);
}

#[test]
fn refunds_add_up_and_lower_the_lifetime_value() {
    let events = [
        rec(1, placed("o1", "c1", 900)),
        rec(2, captured("p1", "o1", 900)),
        rec(3, refunded("p1", "o1", 100)),
        rec(4, refunded("p1", "o1", 200)),
    ];
    let model = ReadModel::fold(&events);
    assert_eq!(model.orders["o1"].refunded_minor, 300);
    assert_eq!(model.customers["c1"].lifetime_value_minor, 600);
    assert_eq!(model.payments["p1"].status(), PaymentStatus::Refunded);
}

#[test]
fn a_cancellation_wins_over_payment_and_shipment() {
    let model =
        ReadModel::fold(&[rec(1, placed("o1", "c1", 100)), rec(2, captured("p1", "o1", 100)), rec(3, cancelled("o1"))]);
    assert_eq!(model.orders["o1"].status(), OrderStatus::Cancelled);
    assert_eq!(model.orders["o1"].cancel_reason.as_deref(), Some("OUT_OF_STOCK"));
}

#[test]
fn applying_the_same_sequence_twice_equals_applying_it_once() {
    let events = vec![
        rec(1, registered("c1", "a@x")),
        rec(2, placed("o1", "c1", 100)),
        rec(3, captured("p1", "o1", 100)),
        rec(4, refunded("p1", "o1", 40)),
        rec(5, email_changed("c1", "b@x")),
    ];
    let once = ReadModel::fold(&events);
    let twice = ReadModel::fold(events.iter().chain(events.iter()));
    assert_eq!(once, twice);
}

#[test]
fn a_duplicate_event_id_is_a_no_op() {
    let mut model = ReadModel::fold(&[rec(1, placed("o1", "c1", 100)), rec(2, captured("p1", "o1", 100))]);
    let before = model.clone();
    assert!(!model.apply(&rec(2, captured("p1", "o1", 100))));
    assert_eq!(model, before);
}

#[test]
fn a_second_order_placed_with_another_id_does_not_count_twice() {
    let model = ReadModel::fold(&[rec(1, placed("o1", "c1", 100)), rec(2, placed("o1", "c1", 100))]);
    assert_eq!(model.customers["c1"].order_count, 1);
}

#[test]
fn a_payment_before_its_order_keeps_a_stub_that_the_order_fills() {
    // given a capture for an order not placed yet
    let mut model = ReadModel::fold(&[rec(1, captured("p1", "o1", 250))]);
    // then the payment is there and the order is a pending stub with no customer
    assert_eq!(model.orders["o1"].status(), OrderStatus::Pending);
    assert_eq!(model.orders["o1"].customer_id, None);
    assert!(model.customers.is_empty());
    // when the order is placed
    model.apply(&rec(2, placed("o1", "c1", 250)));
    // then it is paid and the customer's lifetime value counts the earlier capture
    assert_eq!(model.orders["o1"].status(), OrderStatus::Paid);
    assert_eq!(model.customers["c1"].lifetime_value_minor, 250);
}

#[test]
fn an_order_before_its_customer_registered_keeps_a_stub_customer() {
    let model = ReadModel::fold(&[rec(1, placed("o1", "c1", 100)), rec(2, registered("c1", "a@x"))]);
    let customer = &model.customers["c1"];
    assert_eq!(customer.order_count, 1);
    assert_eq!(customer.email.as_deref(), Some("a@x"));
    assert!(customer.registered_at.is_some());
}

#[test]
fn failed_and_authorized_payments_are_recorded_without_touching_the_order() {
    let model = ReadModel::fold(&[
        rec(
            1,
            Fact::PaymentAuthorized(PaymentAuthorized {
                payment_id: "p1".into(),
                order_id: "o1".into(),
                amount_minor: 70,
                currency: "EUR".into(),
                authorized_at: at(1),
            }),
        ),
        rec(
            2,
            Fact::PaymentFailed(PaymentFailed {
                payment_id: "p2".into(),
                order_id: "o1".into(),
                reason: "card declined".into(),
                failed_at: at(2),
            }),
        ),
    ]);
    assert_eq!(model.payments["p1"].status(), PaymentStatus::Authorized);
    assert_eq!(model.payments["p1"].authorized_minor, 70);
    assert_eq!(model.payments["p2"].status(), PaymentStatus::Failed);
    assert!(model.orders.is_empty());
}

mod oracle;
mod properties;
