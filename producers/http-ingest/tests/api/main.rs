//! The ingest service end to end over HTTP, against a real Apache Kafka broker, our schema registry,
//! and PostgreSQL or SQLite.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;

mod auth;
mod bad_input;
mod fault;
mod idempotency;
mod observability;
mod publish;
mod python;
mod secure;
