//! The shared runtime of every Eventline service: config, telemetry, metrics, shutdown, the
//! event envelope, the Avro codec with Confluent framing, the schema-registry client, the Kafka
//! producer, circuit breakers and the database layer. Services stay thin; the hard parts live
//! here, once.

pub mod avro;
pub mod avro_json;
pub mod breaker;
pub mod catalog;
pub mod config;
pub mod contracts;
pub mod db;
pub mod effects;
pub mod envelope;
pub mod events;
pub mod generations;
pub mod http;
pub mod kafka;
pub mod metrics;
pub mod publish;
pub mod registry_client;
pub mod service;
pub mod shutdown;
pub mod telemetry;

/// The README's Rust examples compile as doc tests, so the documentation cannot drift.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
