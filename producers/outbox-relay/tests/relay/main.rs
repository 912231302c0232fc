//! The outbox relay against a real PostgreSQL (the upstream's database) and a real Apache Kafka broker
//! with our schema registry. One test binary; each test has its own broker, registry and database.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod concurrency;
mod crash;
mod publishing;
mod rejection;
mod startup;
mod support;
mod wake;

/// The example upstream service, exercised as written.
#[path = "../../examples/upstream_service.rs"]
mod upstream;
