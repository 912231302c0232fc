//! Events for tests: builders, a proptest strategy over a few orders, payments, customers, and
//! the [`Seed`] that makes a test's random streams replayable.

use std::fmt;

use chrono::{DateTime, Utc};
use eventline_common::events::*;
use eventline_projector::domain::{Fact, Recorded};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use uuid::Uuid;

/// The seed of a test's random streams: from the environment variable `var` when it is set (to
/// replay a failure), from the clock otherwise. It is printed when taken, and shown by the
/// tests' assertion messages, as `<seed> (replay with <var>=<seed>)`.
#[derive(Debug, Clone, Copy)]
pub struct Seed {
    value: u64,
    var: &'static str,
}

impl Seed {
    /// The seed for `test` (a name for the printed line).
    pub fn from_env(var: &'static str, test: &str) -> Self {
        let value = match std::env::var(var) {
            Ok(text) => text.parse().unwrap_or_else(|_| panic!("{var} is a u64, not {text:?}")),
            Err(_) => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64,
        };
        let seed = Self::new(var, value);
        println!("[{test}] seed {seed}");
        seed
    }

    /// The seed `value`, which `var` would replay.
    pub fn new(var: &'static str, value: u64) -> Self {
        Self { value, var }
    }

    pub fn value(self) -> u64 {
        self.value
    }

    /// A proptest runner whose every draw (the streams' events, their ids and times) follows
    /// from the seed.
    pub fn runner(self) -> TestRunner {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&self.value.to_le_bytes());
        TestRunner::new_with_rng(Config::default(), TestRng::from_seed(RngAlgorithm::ChaCha, &bytes))
    }
}

impl fmt::Display for Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (value, var) = (self.value, self.var);
        write!(f, "{value} (replay with {var}={value})")
    }
}

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
        lines: vec![OrderLine { sku: "sku-1".into(), quantity: 1, unit_price_minor: total }],
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
        (order.clone(), customer.clone(), 1..1000i64, 0..10i64).prop_map(|(o, c, t, ms)| placed(&o, &c, t, ms)),
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
/// The ids are drawn like the rest, so a seeded runner gives the same stream every time.
pub fn stream(prefix: String, max: usize) -> impl Strategy<Value = Vec<Recorded>> {
    (
        proptest::collection::vec((fact(prefix), 0..100_000i64, any::<[u8; 16]>()), 1..max),
        proptest::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>()), 0..5),
    )
        .prop_map(|(facts, redeliveries)| {
            let mut events: Vec<Recorded> = facts
                .into_iter()
                .map(|(fact, ms, id)| {
                    let id = uuid::Builder::from_random_bytes(id).into_uuid();
                    Recorded::new(id, at(1_700_000_000_000 + ms), fact)
                })
                .collect();
            for (which, position) in redeliveries {
                let again = events[which.index(events.len())].clone();
                let at = position.index(events.len() + 1);
                events.insert(at, again);
            }
            events
        })
}
