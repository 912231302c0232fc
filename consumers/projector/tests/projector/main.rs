//! Integration tests of the projector against a real Apache Kafka broker, our schema registry, and
//! PostgreSQL and SQLite: each test with its own broker, database and consumer group.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod broker_restart;
mod crash;
mod events;
mod generations;
mod pipeline;
mod poison;
mod query;
mod read_your_writes;
mod rebuild;
mod store;
mod support;
