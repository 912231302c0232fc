//! The read model as plain data and the fold that builds it from events (pure: no I/O).
//!
//! # Rules
//! - An event is applied once: a second event with the same event id and time (every copy of
//!   an event carries both) changes nothing.
//! - Events of one aggregate on one topic arrive in order (same key, same partition), but the
//!   topics (`orders`, `payments`, `customers`) interleave arbitrarily. So every rule that
//!   crosses topics is commutative: the read model after a set of events is the same whatever
//!   the interleaving across topics.
//! - Out of order across topics: a payment, cancellation or shipment for an order not placed
//!   yet creates a *stub* order row (no customer, no `placed_at`; status `pending`) that keeps
//!   its facts; the order becomes visible in the query API when its `OrderPlaced` arrives. An
//!   `OrderPlaced` for a customer not registered yet creates a stub customer that counts the
//!   order; the customer becomes visible when registered.
//! - Money: amounts add up in minor units; a payment's currency is assumed to be the order's.
//! - `last_event` of a row is the applied event with the greatest (event time, event id): a
//!   commutative choice, so replaying or interleaving differently gives the same row.
//! - A second `OrderPlaced` (another event id) for a placed order, a second
//!   `CustomerRegistered` for a registered customer, and a second cancellation or shipment
//!   change nothing but `last_event`.

mod fold;
mod rows;

pub use fold::{apply, Fact, ReadModel, Recorded, Slice};
pub use rows::{Customer, Order, OrderStatus, Payment, PaymentStatus, Stamp};

#[cfg(test)]
mod tests;
