//! Properties of the fold over random streams: interleavings across topics and redeliveries do
//! not change the read model, and the read model follows the rules (checked against
//! the `oracle` module).

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::oracle::{oracle, totals, views_of};
use super::*;

/// A random event about a few orders, payments and customers.
fn fact() -> impl Strategy<Value = Fact> {
    let order = (0..3u8).prop_map(|i| format!("o{i}"));
    let customer = (0..2u8).prop_map(|i| format!("c{i}"));
    let reason = prop_oneof![
        Just(CancellationReason::CustomerRequest),
        Just(CancellationReason::OutOfStock),
        Just(CancellationReason::FraudSuspected),
    ];
    prop_oneof![
        (order.clone(), customer.clone(), 1..1000i64).prop_map(|(o, c, t)| placed(&o, &c, t)),
        (order.clone(), 0..100i64).prop_map(|(o, ms)| {
            let Fact::OrderShipped(mut e) = shipped(&o) else { unreachable!() };
            e.shipped_at = at(ms);
            Fact::OrderShipped(e)
        }),
        (order.clone(), reason, 0..100i64).prop_map(|(o, reason, ms)| {
            Fact::OrderCancelled(OrderCancelled { order_id: o, reason, cancelled_at: at(ms) })
        }),
        (order.clone(), 1..500i64).prop_map(|(o, a)| {
            Fact::PaymentAuthorized(PaymentAuthorized {
                payment_id: format!("p-{o}"),
                order_id: o,
                amount_minor: a,
                currency: "EUR".into(),
                authorized_at: at(15),
            })
        }),
        order.clone().prop_map(|o| {
            Fact::PaymentFailed(PaymentFailed {
                payment_id: format!("p-{o}"),
                order_id: o,
                reason: "card declined".into(),
                failed_at: at(16),
            })
        }),
        (order.clone(), 1..500i64).prop_map(|(o, a)| captured(&format!("p-{o}"), &o, a)),
        (order, 1..100i64).prop_map(|(o, a)| refunded(&format!("p-{o}"), &o, a)),
        (customer.clone(), "[a-c]{1,3}").prop_map(|(c, e)| registered(&c, &e)),
        (customer, "[a-c]{1,3}").prop_map(|(c, e)| email_changed(&c, &e)),
    ]
}

/// The topic an event is on and its key (events of one key on one topic keep their order).
fn stream(fact: &Fact) -> (u8, String) {
    match fact {
        Fact::CustomerRegistered(e) => (0, e.customer_id.clone()),
        Fact::CustomerEmailChanged(e) => (0, e.customer_id.clone()),
        Fact::OrderPlaced(e) => (1, e.order_id.clone()),
        Fact::OrderCancelled(e) => (1, e.order_id.clone()),
        Fact::OrderShipped(e) => (1, e.order_id.clone()),
        Fact::PaymentAuthorized(e) => (2, e.order_id.clone()),
        Fact::PaymentCaptured(e) => (2, e.order_id.clone()),
        Fact::PaymentFailed(e) => (2, e.order_id.clone()),
        Fact::PaymentRefunded(e) => (2, e.order_id.clone()),
    }
}

/// Events with ids 1, 2, ... (times in the same order), and copies of some of them
/// redelivered at random places.
fn events_with_redeliveries(
    facts: Vec<Fact>,
    redeliveries: Vec<(prop::sample::Index, prop::sample::Index)>,
) -> Vec<Recorded> {
    let mut events: Vec<Recorded> = facts.into_iter().enumerate().map(|(i, f)| rec(i as u128 + 1, f)).collect();
    if !events.is_empty() {
        for (which, place) in redeliveries {
            let again = events[which.index(events.len())].clone();
            events.insert(place.index(events.len() + 1), again);
        }
    }
    events
}

proptest! {
    /// Any interleaving that keeps the order per topic and key, with redeliveries, folds to
    /// the same read model: what the projector sees from Kafka does not change the answer.
    #[test]
    fn the_fold_ignores_interleaving_across_topics_and_redeliveries(
        facts in proptest::collection::vec(fact(), 0..40),
        picks in proptest::collection::vec(any::<prop::sample::Index>(), 0..80),
        duplicates in proptest::collection::vec(any::<prop::sample::Index>(), 0..10),
    ) {
        let events: Vec<Recorded> = facts.into_iter().enumerate().map(|(i, f)| rec(i as u128 + 1, f)).collect();
        let expected = ReadModel::fold(&events);
        // Split by stream, then merge the streams in a random interleaving.
        let mut streams: BTreeMap<(u8, String), std::collections::VecDeque<Recorded>> = Default::default();
        for event in &events {
            streams.entry(stream(&event.fact)).or_default().push_back(event.clone());
        }
        let mut shuffled = Vec::new();
        let mut picks = picks.into_iter();
        while !streams.is_empty() {
            let keys: Vec<_> = streams.keys().cloned().collect();
            let key = &keys[picks.next().map_or(0, |p| p.index(keys.len()))];
            let queue = streams.get_mut(key).unwrap();
            shuffled.extend(queue.pop_front());
            if queue.is_empty() {
                streams.remove(key);
            }
        }
        if !events.is_empty() {
            for d in duplicates {
                shuffled.push(events[d.index(events.len())].clone());
            }
        }
        prop_assert_eq!(ReadModel::fold(&shuffled), expected);
    }

    /// The fold agrees with the rules computed another way (see the `oracle` module), so a rule the
    /// fold gets consistently wrong (order-independent, but wrong) fails here.
    #[test]
    fn the_fold_follows_the_rules_computed_from_the_events(
        facts in proptest::collection::vec(fact(), 0..40),
        redeliveries in proptest::collection::vec(
            (any::<prop::sample::Index>(), any::<prop::sample::Index>()), 0..8,
        ),
    ) {
        let events = events_with_redeliveries(facts, redeliveries);
        let expected = oracle(&events);
        let folded = views_of(&ReadModel::fold(&events));
        prop_assert_eq!(totals(&folded), totals(&expected), "totals");
        prop_assert_eq!(&folded.orders, &expected.orders, "orders");
        prop_assert_eq!(&folded.customers, &expected.customers, "customers");
        prop_assert_eq!(&folded.payments, &expected.payments, "payments");
        prop_assert_eq!(&folded.applied, &expected.applied, "applied events");
    }
}

/// The oracle itself on a hand-written stream, against numbers worked out by hand.
#[test]
fn the_oracle_gives_the_hand_worked_answer() {
    let events = [
        rec(1, captured("p-o1", "o1", 300)),
        rec(2, placed("o1", "c1", 500)),
        rec(3, placed("o1", "c0", 900)),
        rec(4, refunded("p-o1", "o1", 100)),
        rec(5, placed("o2", "c1", 70)),
        rec(6, cancelled("o2")),
        rec(7, shipped("o2")),
        rec(8, registered("c1", "a@x")),
        rec(9, email_changed("c1", "b@x")),
        rec(10, registered("c1", "c@x")),
        rec(4, refunded("p-o1", "o1", 100)),
    ];
    let views = oracle(&events);
    assert_eq!(views.applied.len(), 10);
    let (o1, o2) = (&views.orders["o1"], &views.orders["o2"]);
    assert_eq!((o1.customer_id.as_deref(), o1.total_minor, o1.status), (Some("c1"), 500, OrderStatus::Paid));
    assert_eq!((o1.captured_minor, o1.refunded_minor), (300, 100));
    assert_eq!(o2.status, OrderStatus::Cancelled);
    assert_eq!(o2.cancel_reason.as_deref(), Some("OUT_OF_STOCK"));
    let c1 = &views.customers["c1"];
    assert_eq!((c1.order_count, c1.lifetime_value_minor), (2, 200));
    assert_eq!(c1.email.as_deref(), Some("b@x"));
    assert_eq!(c1.last_event.event_id, Uuid::from_u128(10));
    assert!(!views.customers.contains_key("c0"), "a second OrderPlaced names no customer");
    assert_eq!(views.payments["p-o1"].status, PaymentStatus::Refunded);
    assert_eq!(totals(&views), (2, 2, 200, 200));
    // And the fold agrees.
    assert_eq!(views_of(&ReadModel::fold(&events)), views);
}
