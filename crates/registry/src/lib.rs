//! A Confluent-compatible schema registry (the REST API subset clients use) over PostgreSQL or
//! SQLite. Embed it with [`RegistryApp`]; `eventline-registry` runs it alone.
//!
//! - `config`: the `[registry]` settings;
//! - `app`: build (migrations, metrics) and run until stopped;
//! - `domain`: schema parsing and identity, versions, compatibility (pure);
//! - `service`: the use cases over the store; `store`: SQL;
//! - `http`: routes, extractors and the error body; `metrics`: what is counted.

pub mod app;
pub mod config;
pub mod domain;
pub mod http;
pub mod metrics;
pub mod service;
pub mod store;

pub use app::RegistryApp;
pub use config::RegistrySettings;
