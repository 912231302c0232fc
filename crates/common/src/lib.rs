//! The shared runtime of every Eventline service: config, telemetry, metrics, shutdown, the
//! event envelope, the Avro codec with Confluent framing, the schema-registry client, the Kafka
//! producer and the database layer. Services stay thin; the hard parts live here, once.

pub mod config;
pub mod db;
pub mod http;
pub mod metrics;
pub mod shutdown;
pub mod telemetry;
pub mod catalog;
pub mod avro;
pub mod envelope;
pub mod registry_client;
pub mod events;
pub mod kafka;
pub mod contracts;
pub mod avro_json;
pub mod publish;

/// The README's Rust examples compile as doc tests, so the documentation cannot drift.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
