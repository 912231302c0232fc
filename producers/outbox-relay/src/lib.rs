//! The transactional outbox relay: publishes the rows an upstream service writes into an outbox
//! table in its own PostgreSQL (in the same transaction as its business change) to Kafka, in order
//! per aggregate, through the shared publishing path. Embed it with [`OutboxRelay`];
//! `eventline-outbox-relay` runs it alone.
//!
//! - `config`: the `[outbox_relay]` settings;
//! - `app`: build (connect, table, metrics) and run until stopped;
//! - `relay`: the batch loop and how order per aggregate is kept across relays;
//! - `domain`: names, rows to events, batch decisions, backoff (pure);
//! - `store`: SQL; `ddl`: the table (`sql/outbox.sql`); `wake`: LISTEN/NOTIFY;
//! - `metrics`: what is counted.

pub mod app;
pub mod config;
pub mod ddl;
pub mod domain;
pub mod metrics;
pub mod relay;
pub mod store;
pub mod wake;

pub use app::OutboxRelay;
pub use config::OutboxRelaySettings;
