//! The test harness: real parts, each test with its own.
//!
//! - [`Broker`]: Apache Kafka on loopback, shared by the run's tests or a test's own;
//!   [`Broker::start_secure`] and [`Broker::shared_secure`] with a SASL_SSL listener ([`secure`]).
//! - [`PgDatabase`]: a fresh database on the machine's PostgreSQL (dropped afterwards).
//! - [`SqliteDatabase`]: a SQLite file in a temp dir.
//! - [`python`]: the interpreter of the interop venv prepared by `./dev.sh test`.
//! - [`unique`]: names for topics, groups and subjects that no other test uses.
//! - [`eventually`]: wait for a condition with a deadline instead of sleeping.

mod broker;
mod postgres;
mod python;
pub mod secure;

use std::future::Future;
use std::time::{Duration, Instant};

pub use broker::{start_local_broker, Broker, SHARED_BOOTSTRAP_ENV};
pub use postgres::{PgDatabase, SqliteDatabase};
pub use python::{python, run_python};

/// A name no other test (or earlier run) uses: `prefix-<12 hex chars>`.
pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..12])
}

/// Polls `check` until it returns `Some`, failing with `what` after `deadline`.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    let mut pause = Duration::from_millis(10);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(started.elapsed() < deadline, "timed out after {deadline:?} waiting for {what}");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// A free TCP port on 127.0.0.1 (bound and released; good enough for a child process).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port on 127.0.0.1: {e}"))
}
