//! The test harness: real parts, each test with its own.
//!
//! - [`Broker`]: Apache Kafka on loopback, shared by the run's tests or a test's own;
//!   [`Broker::start_secure`] and [`Broker::shared_secure`] with a SASL_SSL listener ([`secure`]).
//! - [`PgDatabase`]: a fresh database on the machine's PostgreSQL (dropped afterwards).
//! - [`SqliteDatabase`]: a SQLite file in a temp dir.
//! - [`python`]: the interpreter of the interop venv prepared by `./dev.sh test`.
//! - [`unique`]: names for topics, groups and subjects that no other test uses.
//! - [`eventually`]: wait for a condition with a deadline instead of sleeping.
//! - [`free_port`]: a port for a child process to listen on, outside the kernel's ephemeral range.

mod broker;
mod postgres;
mod python;
pub mod secure;

use std::future::Future;
use std::time::{Duration, Instant};

pub use broker::{
    start_local_broker, start_shared_broker, Broker, SHARED_BOOTSTRAP_ENV, SHARED_CERTIFICATES_ENV,
    SHARED_SECURE_BOOTSTRAP_ENV,
};
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

/// A TCP port on 127.0.0.1 that nothing listens on, for a child process to bind (it needs a
/// number, not a listener). Between this check and the child's bind the port is free for anyone
/// to take; two things keep that window from being hit:
///
/// - The port is picked at random from 20000 up to the start of the kernel's ephemeral range
///   (`/proc/sys/net/ipv4/ip_local_port_range`, 32768-60999 by default on Linux). The kernel
///   hands out ephemeral ports for every `bind(0)` and outgoing connection, and the tests make
///   thousands of those (clients, brokers, databases), so a port from that range could be taken
///   by the next connection anywhere on the machine. Outside it, only a process that binds that
///   number on purpose can.
/// - This process hands out each port once: a test that starts several children gets
///   different ports even before the first of them has bound its own.
///
/// What remains: another process picking ports the same way (another test binary running at the
/// same time, one chance in several thousand per pair of ports) or a program binding a fixed
/// port in the range can still take the port before the child binds it. The child then fails
/// to bind ("address in use") and the test fails with that, rather than passing against a
/// stranger.
pub fn free_port() -> u16 {
    let ports = port_range();
    take_free_port(ports.clone())
        .unwrap_or_else(|| panic!("no free port on 127.0.0.1 in {ports:?} that this process has not handed out"))
}

/// The lowest port [`free_port`] hands out: well above the registered ports of common services.
const PORTS_FLOOR: u16 = 20_000;
/// The fewest ports worth picking from; below that, the ephemeral range is not avoided.
const PORTS_MIN: u16 = 2_000;

/// Where [`free_port`] picks: from [`PORTS_FLOOR`] up to the start of the kernel's ephemeral
/// range (its Linux default where it cannot be read), or above its end when it starts too low
/// to leave [`PORTS_MIN`] ports; all unprivileged ports when neither side leaves that many.
fn port_range() -> std::ops::Range<u16> {
    let (low, high) = ephemeral_range().unwrap_or((32_768, 60_999));
    if low >= PORTS_FLOOR.saturating_add(PORTS_MIN) {
        PORTS_FLOOR..low
    } else if high <= u16::MAX - PORTS_MIN {
        high + 1..u16::MAX
    } else {
        1_024..u16::MAX
    }
}

/// The kernel's ephemeral port range, inclusive, where the system says.
fn ephemeral_range() -> Option<(u16, u16)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut bounds = text.split_whitespace().map(str::parse::<u16>);
    match (bounds.next(), bounds.next()) {
        (Some(Ok(low)), Some(Ok(high))) if low <= high => Some((low, high)),
        _ => None,
    }
}

/// Ports [`free_port`] has handed out in this process.
static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// A port of `ports` not handed out before by this process and free to bind now, trying each
/// once from a random start; `None` when there is none.
fn take_free_port(ports: std::ops::Range<u16>) -> Option<u16> {
    use std::hash::BuildHasher as _;
    let len = ports.len();
    if len == 0 {
        return None;
    }
    // A random start (the hasher's keys are random per process and per call), so test processes
    // running at the same time seldom try the same ports.
    let start = std::collections::hash_map::RandomState::new().hash_one(std::process::id()) as usize % len;
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let port = (0..len)
        .map(|i| ports.start + ((start + i) % len) as u16)
        .find(|port| !handed_out.contains(port) && std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok())?;
    handed_out.insert(port);
    Some(port)
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    #[test]
    fn free_ports_are_never_repeated_and_stay_out_of_the_ephemeral_range() {
        let ports: Vec<u16> = (0..500).map(|_| free_port()).collect();
        let distinct: std::collections::BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len(), "a port handed out twice");
        let (low, high) = ephemeral_range().expect("this test runs on Linux");
        for port in ports {
            assert!(port_range().contains(&port), "{port} outside {:?}", port_range());
            assert!(!(low..=high).contains(&port), "{port} is in the ephemeral range {low}-{high}");
        }
        assert!(port_range().len() >= usize::from(PORTS_MIN), "{:?}", port_range());
    }

    #[test]
    fn a_port_something_listens_on_is_not_handed_out() {
        let busy = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = busy.local_addr().unwrap().port();
        assert_eq!(take_free_port(port..port + 1), None);
        drop(busy);
        assert_eq!(take_free_port(port..port + 1), Some(port), "free once the listener is gone");
        assert_eq!(take_free_port(port..port + 1), None, "handed out already");
    }

    #[test]
    fn the_child_can_bind_the_port() {
        let port = free_port();
        TcpListener::bind(("127.0.0.1", port)).unwrap();
    }
}
