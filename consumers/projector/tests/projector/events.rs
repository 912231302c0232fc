//! Events for tests: builders and a proptest strategy over a few orders, payments, customers.

use chrono::{DateTime, Utc};
use eventline_common::events::*;
use eventline_projector::domain::{Fact, Recorded};
use proptest::prelude::*;
use uuid::Uuid;

pub fn at(millis: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(millis).unwrap()
}

pub fn recorded(fact: Fact) -> Recorded {
    Recorded::new(Uuid::new_v4(), Utc::now(), fact)
}

pub fn placed(order: &str, customer: &str, total: i64, placed_ms: i64) -> Fact {
    Fact::OrderPlaced(OrderPlaced {
        order_id: order.into(),
        customer_id: customer.into(),
        lines: vec![OrderLine {
            sku: "sku-1".into(),
            quantity: 1,
            unit_price_minor: total,
        }],
        currency: "EUR".into(),
        total_minor: total,
        placed_at: at(placed_ms),
    })
}

pub fn captured(payment: &str, order: &str, amount: i64) -> Fact {
    Fact::PaymentCaptured(PaymentCaptured {
        payment_id: payment.into(),
        order_id: order.into(),
        amount_minor: amount,
        currency: "EUR".into(),
        captured_at: at(2_000),
    })
}

pub fn authorized(payment: &str, order: &str, amount: i64) -> Fact {
    Fact::PaymentAuthorized(PaymentAuthorized {
        payment_id: payment.into(),
        order_id: order.into(),
        amount_minor: amount,
        currency: "EUR".into(),
        authorized_at: at(1_500),
    })
}

pub fn failed(payment: &str, order: &str) -> Fact {
    Fact::PaymentFailed(PaymentFailed {
        payment_id: payment.into(),
        order_id: order.into(),
        reason: "card declined".into(),
        failed_at: at(1_600),
    })
}

pub fn refunded(payment: &str, order: &str, amount: i64) -> Fact {
    Fact::PaymentRefunded(PaymentRefunded {
        payment_id: payment.into(),
        order_id: order.into(),
        amount_minor: amount,
        currency: "EUR".into(),
        refunded_at: at(3_000),
    })
}

pub fn shipped(order: &str) -> Fact {
    Fact::OrderShipped(OrderShipped {
        order_id: order.into(),
        carrier: "DHL".into(),
        tracking_number: Some("T-1".into()),
        shipped_at: at(4_000),
    })
}

pub fn cancelled(order: &str) -> Fact {
    Fact::OrderCancelled(OrderCancelled {
        order_id: order.into(),
        reason: CancellationReason::CustomerRequest,
        cancelled_at: at(5_000),
    })
}

pub fn registered(customer: &str, email: &str) -> Fact {
    Fact::CustomerRegistered(CustomerRegistered {
        customer_id: customer.into(),
        email: email.into(),
        name: "Ada Lovelace".into(),
        registered_at: at(500),
    })
}

pub fn email_changed(customer: &str, email: &str) -> Fact {
    Fact::CustomerEmailChanged(CustomerEmailChanged {
        customer_id: customer.into(),
        new_email: email.into(),
        changed_at: at(600),
    })
}

/// A random event about three orders and two customers whose ids start with `prefix`.
pub fn fact(prefix: String) -> impl Strategy<Value = Fact> {
    let p = prefix.clone();
    let order = (0..3u8).prop_map(move |i| format!("{p}-o{i}"));
    let p = prefix;
    let customer = (0..2u8).prop_map(move |i| format!("{p}-c{i}"));
    prop_oneof![
        (order.clone(), customer.clone(), 1..1000i64, 0..10i64)
            .prop_map(|(o, c, t, ms)| placed(&o, &c, t, ms)),
        order.clone().prop_map(|o| shipped(&o)),
        order.clone().prop_map(|o| cancelled(&o)),
        (order.clone(), 1..500i64).prop_map(|(o, a)| authorized(&format!("{o}-p"), &o, a)),
        order.clone().prop_map(|o| failed(&format!("{o}-p"), &o)),
        (order.clone(), 1..500i64).prop_map(|(o, a)| captured(&format!("{o}-p"), &o, a)),
        (order, 1..100i64).prop_map(|(o, a)| refunded(&format!("{o}-p"), &o, a)),
        (customer.clone(), "[a-c]{1,3}").prop_map(|(c, e)| registered(&c, &e)),
        (customer, "[a-c]{1,3}").prop_map(|(c, e)| email_changed(&c, &e)),
    ]
}

/// Random events with ids, plus redeliveries of some of them (same event id) at random places.
pub fn stream(prefix: String, max: usize) -> impl Strategy<Value = Vec<Recorded>> {
    (
        proptest::collection::vec((fact(prefix), 0..100_000i64), 1..max),
        proptest::collection::vec(
            (any::<prop::sample::Index>(), any::<prop::sample::Index>()),
            0..5,
        ),
    )
        .prop_map(|(facts, redeliveries)| {
            let mut events: Vec<Recorded> = facts
                .into_iter()
                .map(|(fact, ms)| Recorded::new(Uuid::new_v4(), at(1_700_000_000_000 + ms), fact))
                .collect();
            for (which, position) in redeliveries {
                let again = events[which.index(events.len())].clone();
                let at = position.index(events.len() + 1);
                events.insert(at, again);
            }
            events
        })
}
