//! HTTP ingest: upstream systems publish events over HTTP, one or a batch at a time. Each event
//! is checked against the caller's scopes, validated against its Avro schema, and published
//! with the idempotent producer; the answer comes only after the broker acknowledged, with
//! topic, partition and offset. Embed it with [`IngestApp`]; `eventline-http-ingest` runs it alone.
//!
//! - `config`: the `[ingest]` settings; `app`: build and run until stopped;
//! - `ingest`: the use case (scopes, validation, id claims, publishing), one outcome per event;
//! - `auth`: bearer JWTs and the scope rule; `rate_limit`: a token bucket per client;
//! - `idempotency`: keys, fingerprints and their store; `broker`: the readiness probe;
//! - `http`: routes, body parsing, extractors, problem+json answers; `metrics`: what is counted.
//!
//! Events go out through [`eventline_common::publish::Publisher`] over the event producer of
//! [`eventline_common::kafka::producer`], which swaps in a fresh Kafka producer when a record is
//! not acknowledged.

pub mod app;
pub mod auth;
pub mod broker;
pub mod config;
pub mod http;
pub mod idempotency;
pub mod ingest;
pub mod metrics;
pub mod rate_limit;

pub use app::IngestApp;
pub use config::IngestSettings;
