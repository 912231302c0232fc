//! The projector: read models of orders, customers and payments built only from events, and a
//! query API over them with read-your-writes: the [`ProjectorService`], run by `eventline up` or
//! alone with `eventline run projector`.
//!
//! - `config`: the projector settings;
//! - `domain`: the rows and the fold (pure);
//! - `store`: SQL (PostgreSQL and SQLite), one transaction per batch with the offsets;
//! - `generations`: the active generation's store for each query (the generations themselves,
//!   rebuilds, swaps and rollbacks are [`eventline_common::generations`]'s; the projector is
//!   [`Rebuildable`](eventline_common::service::Rebuildable) with its tables' DDL and lock in
//!   `store::tables`);
//! - `handler`: the consumer [`Handler`](eventline_common::kafka::consumer::Handler);
//! - `http`: the query API; `metrics`: what is counted; `app`: the service (built and run by
//!   the shared runtime), following the active generation.
//!
//! ```text
//! curl -s 'http://127.0.0.1:8082/v1/orders/order-1?after=orders:3:42'
//! curl -s 'http://127.0.0.1:8082/v1/customers/cust-1/orders?status=paid&limit=10'
//! ```
//!
//! `after` (or the `Eventline-Position` header) is the position ingest returned for a write:
//! the answer waits until the projector's group has applied it (the transactional offset
//! table), at most `wait_timeout`, and otherwise is `412` `urn:eventline:problem:not-caught-up`
//! with `Retry-After: 1` and the position, so the client knows the data is not there yet.

pub mod app;
pub mod config;
pub mod domain;
pub mod generations;
pub mod handler;
pub mod http;
pub mod metrics;
pub mod store;

pub use app::ProjectorService;
pub use config::ProjectorSettings;
