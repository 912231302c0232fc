//! The registry's REST API, end to end over HTTP, against PostgreSQL and SQLite.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;

mod auth;
mod compatibility;
mod concurrency;
mod config;
mod delete;
mod errors;
mod observability;
mod python;
mod register;
