//! The consumer runtime against a real Apache Kafka broker, our schema registry, and PostgreSQL and
//! SQLite for the transactional offset store. Each test has its own broker, topics and group.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod delivery;
mod generations;
mod key_order;
mod members;
mod offset_store;
mod offsets;
mod outage;
mod poison;
mod rebalance;
mod shutdown;
mod start;
mod support;
