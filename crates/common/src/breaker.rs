//! A circuit breaker per named dependency: after `failure_threshold` failures in a row within
//! `window`, calls are refused at once for `open_for`, then one probe call is let through.
//!
//! ```text
//!            failure_threshold failures in a row, within window
//!   Closed ───────────────────────────────────────────────────▶ Open ◀──┐
//!     ▲                                                    open_for │    │ the probe fails
//!     │ the probe succeeds                                          ▼    │
//!     └─────────────────────────────────────────────────────── HalfOpen ─┘
//!                                     (one probe call; others are refused)
//! ```
//!
//! A success while closed clears the failures: the breaker opens for a dependency that is down,
//! not for one that fails now and then. Outcomes of calls let through before the last state
//! change are ignored, so a slow call from before an outage cannot close or reopen it.
//!
//! The state is the gauge `eventline_circuit_state{dependency}` (0 closed, 1 open, 2 half-open)
//! in the registry the breaker is created with, and every change is logged once, in the same
//! place. In a consumer's handler, an open breaker is a [`HandlerError::Unavailable`] for its
//! dependency (`?` converts [`Open`] and [`BreakerError`]), so the runtime pauses the partition
//! rather than spending retries:
//!
//! ```no_run
//! # use eventline_common::breaker::CircuitBreaker;
//! # use eventline_common::kafka::consumer::{Batch, Handler, HandlerError};
//! # async fn price(_order: &str) -> Result<i64, std::io::Error> { Ok(0) }
//! struct Pricing { breaker: CircuitBreaker }
//!
//! impl Handler for Pricing {
//!     async fn handle(&self, batch: &Batch) -> Result<(), HandlerError> {
//!         for event in batch {
//!             let _price = self.breaker.call(|| price(&event.event_type)).await?;
//!         }
//!         Ok(())
//!     }
//! }
//! ```

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prometheus::{IntGauge, Opts, Registry};
use serde::{Deserialize, Serialize};

use crate::kafka::consumer::HandlerError;

/// The gauge of every breaker's state, labelled by `dependency`.
pub const CIRCUIT_STATE: &str = "eventline_circuit_state";

/// When a breaker opens and for how long.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerSettings {
    /// Failures in a row (no success between them) that open the breaker (at least 1).
    pub failure_threshold: u32,
    /// ... all within this long.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// How long an open breaker refuses calls before it lets one probe through.
    #[serde(with = "humantime_serde")]
    pub open_for: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self { failure_threshold: 5, window: Duration::from_secs(30), open_for: Duration::from_secs(10) }
    }
}

impl BreakerSettings {
    pub fn validate(&self) -> Result<(), BreakerSetupError> {
        let invalid = |key, problem| Err(BreakerSetupError::Invalid { key, problem });
        if self.failure_threshold == 0 {
            return invalid("failure_threshold", "must be at least 1");
        }
        if self.window.is_zero() {
            return invalid("window", "must be positive");
        }
        if self.open_for.is_zero() {
            return invalid("open_for", "must be positive");
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BreakerSetupError {
    #[error("circuit breaker setting `{key}` {problem}")]
    Invalid { key: &'static str, problem: &'static str },
    #[error("cannot register the circuit breaker's gauge (one breaker per dependency and registry)")]
    Metrics(#[source] prometheus::Error),
}

/// Where a breaker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Calls go through; failures are counted.
    Closed,
    /// Calls are refused until `open_for` has passed.
    Open,
    /// One probe call goes through; its outcome closes or reopens the breaker.
    HalfOpen,
}

impl CircuitState {
    /// The value of [`CIRCUIT_STATE`].
    pub fn gauge_value(self) -> i64 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half-open",
        }
    }
}

/// The breaker refused a call: the dependency is taken to be down.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the circuit breaker of {dependency} is open (next probe in {retry_in:?})")]
pub struct Open {
    pub dependency: String,
    /// When a probe may go through; zero while a probe is under way (try again shortly).
    pub retry_in: Duration,
}

/// What [`CircuitBreaker::call`] can fail with.
#[derive(Debug, thiserror::Error)]
pub enum BreakerError<E> {
    #[error(transparent)]
    Open(#[from] Open),
    /// The call was made and failed (counted as a failure of the dependency).
    #[error("{dependency} failed")]
    Failed {
        dependency: String,
        #[source]
        source: E,
    },
}

/// An open breaker means its dependency is unavailable: pause the partition.
impl From<Open> for HandlerError {
    fn from(open: Open) -> Self {
        Self::unavailable(open.dependency.clone(), open)
    }
}

/// A call through a breaker that was refused or failed: its dependency is unavailable.
impl<E: Into<anyhow::Error>> From<BreakerError<E>> for HandlerError {
    fn from(error: BreakerError<E>) -> Self {
        match error {
            BreakerError::Open(open) => open.into(),
            BreakerError::Failed { dependency, source } => Self::unavailable(dependency, source),
        }
    }
}

/// The time a breaker goes by (injectable, so tests need no sleeps).
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Instant;
}

/// [`Instant::now`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A circuit breaker for one dependency; clones share their state.
#[derive(Clone)]
pub struct CircuitBreaker {
    inner: Arc<Inner>,
}

struct Inner {
    dependency: String,
    settings: BreakerSettings,
    clock: Arc<dyn Clock>,
    machine: Mutex<Machine>,
    gauge: IntGauge,
}

impl std::fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("dependency", &self.inner.dependency)
            .field("state", &self.state())
            .finish()
    }
}

impl CircuitBreaker {
    /// A closed breaker for `dependency` (a short fixed name: it is a metric label), its state
    /// exported to `registry`.
    pub fn new(
        dependency: impl Into<String>,
        settings: BreakerSettings,
        registry: &Registry,
    ) -> Result<Self, BreakerSetupError> {
        Self::with_clock(dependency, settings, registry, Arc::new(SystemClock))
    }

    /// [`new`](Self::new) with another clock.
    pub fn with_clock(
        dependency: impl Into<String>,
        settings: BreakerSettings,
        registry: &Registry,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, BreakerSetupError> {
        settings.validate()?;
        let dependency = dependency.into();
        let opts = Opts::new(CIRCUIT_STATE, "Circuit breaker state: 0 closed, 1 open, 2 half-open")
            .const_label("dependency", dependency.clone());
        let gauge = IntGauge::with_opts(opts).map_err(BreakerSetupError::Metrics)?;
        registry.register(Box::new(gauge.clone())).map_err(BreakerSetupError::Metrics)?;
        let machine = Mutex::new(Machine::new(settings.clone()));
        Ok(Self { inner: Arc::new(Inner { dependency, settings, clock, machine, gauge }) })
    }

    pub fn dependency(&self) -> &str {
        &self.inner.dependency
    }

    pub fn settings(&self) -> &BreakerSettings {
        &self.inner.settings
    }

    fn machine(&self) -> MutexGuard<'_, Machine> {
        self.inner.machine.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The state now (an open breaker whose `open_for` has passed is still `Open` until the
    /// next [`check`](Self::check) lets its probe through).
    pub fn state(&self) -> CircuitState {
        self.machine().state()
    }

    /// Asks to make a call: a [`Permit`] to report its outcome on, or [`Open`].
    pub fn check(&self) -> Result<Permit, Open> {
        let now = self.inner.clock.now();
        let mut machine = self.machine();
        let before = machine.state();
        let outcome = machine.check(now);
        self.changed(before, machine.state());
        match outcome {
            Ok(ticket) => Ok(Permit { breaker: self.clone(), ticket, reported: false }),
            Err(retry_in) => Err(Open { dependency: self.inner.dependency.clone(), retry_in }),
        }
    }

    /// Makes the call `f` if the breaker allows it and reports its outcome: every `Err` counts
    /// as a failure of the dependency. For calls whose errors are not all the dependency's
    /// fault (a rejected request), use [`check`](Self::check) and report yourself.
    pub async fn call<T, E, F, Fut>(&self, f: F) -> Result<T, BreakerError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let permit = self.check()?;
        match f().await {
            Ok(value) => {
                permit.success();
                Ok(value)
            }
            Err(source) => {
                permit.failure();
                Err(BreakerError::Failed { dependency: self.inner.dependency.clone(), source })
            }
        }
    }

    fn report(&self, ticket: Ticket, outcome: Option<bool>) {
        let now = self.inner.clock.now();
        let mut machine = self.machine();
        let before = machine.state();
        match outcome {
            Some(true) => machine.success(ticket),
            Some(false) => machine.failure(ticket, now),
            None => machine.abandon(ticket),
        }
        self.changed(before, machine.state());
    }

    /// The one place a state change is logged and exported.
    fn changed(&self, before: CircuitState, after: CircuitState) {
        if before == after {
            return;
        }
        self.inner.gauge.set(after.gauge_value());
        let dependency = self.inner.dependency.as_str();
        let BreakerSettings { failure_threshold, window, open_for } = &self.inner.settings;
        match (before, after) {
            (CircuitState::Closed, CircuitState::Open) => tracing::warn!(
                dependency, failure_threshold, window = ?window, open_for = ?open_for,
                "circuit breaker open: the dependency keeps failing; calls are refused"
            ),
            (CircuitState::HalfOpen, CircuitState::Open) => tracing::warn!(
                dependency, open_for = ?open_for, "circuit breaker open again: the probe call failed"
            ),
            (_, CircuitState::HalfOpen) => {
                tracing::info!(dependency, "circuit breaker half-open: one probe call goes through")
            }
            (_, CircuitState::Closed) => tracing::info!(dependency, "circuit breaker closed: the probe call succeeded"),
            (_, CircuitState::Open) => tracing::warn!(dependency, "circuit breaker open"),
        }
    }
}

/// Leave to make one call; report how it went with [`success`](Self::success) or
/// [`failure`](Self::failure). Dropped unreported (the call was cancelled), it counts as
/// neither, and a probe's turn passes to the next caller.
#[must_use = "report the call's outcome with success() or failure()"]
pub struct Permit {
    breaker: CircuitBreaker,
    ticket: Ticket,
    reported: bool,
}

impl Permit {
    pub fn success(mut self) {
        self.reported = true;
        self.breaker.report(self.ticket, Some(true));
    }

    pub fn failure(mut self) {
        self.reported = true;
        self.breaker.report(self.ticket, Some(false));
    }

    /// Reports `result`'s outcome and hands it back.
    pub fn record<T, E>(self, result: Result<T, E>) -> Result<T, E> {
        match &result {
            Ok(_) => self.success(),
            Err(_) => self.failure(),
        }
        result
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.reported {
            self.breaker.report(self.ticket, None);
        }
    }
}

/// Which state a permit was given in, and whether it is the half-open probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ticket {
    generation: u64,
    probe: bool,
}

/// The breaker's rules, without clock, locks or metrics.
#[derive(Debug)]
struct Machine {
    settings: BreakerSettings,
    state: State,
    /// Bumped at every state change: outcomes of permits from an earlier state are ignored.
    generation: u64,
}

#[derive(Debug)]
enum State {
    /// The times of the failures in a row so far.
    Closed {
        failures: VecDeque<Instant>,
    },
    Open {
        until: Instant,
    },
    HalfOpen {
        probing: bool,
    },
}

impl Machine {
    fn new(settings: BreakerSettings) -> Self {
        Self { settings, state: State::Closed { failures: VecDeque::new() }, generation: 0 }
    }

    fn state(&self) -> CircuitState {
        match self.state {
            State::Closed { .. } => CircuitState::Closed,
            State::Open { .. } => CircuitState::Open,
            State::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }

    fn enter(&mut self, state: State) {
        self.state = state;
        self.generation += 1;
    }

    fn ticket(&self, probe: bool) -> Ticket {
        Ticket { generation: self.generation, probe }
    }

    /// A permit, or how long until a probe may go through.
    fn check(&mut self, now: Instant) -> Result<Ticket, Duration> {
        match &mut self.state {
            State::Closed { .. } => Ok(self.ticket(false)),
            State::Open { until } if now < *until => Err(*until - now),
            State::Open { .. } => {
                self.enter(State::HalfOpen { probing: true });
                Ok(self.ticket(true))
            }
            State::HalfOpen { probing: true } => Err(Duration::ZERO),
            State::HalfOpen { probing } => {
                *probing = true;
                Ok(self.ticket(true))
            }
        }
    }

    fn success(&mut self, ticket: Ticket) {
        if ticket.generation != self.generation {
            return;
        }
        match &mut self.state {
            State::Closed { failures } => failures.clear(),
            State::HalfOpen { .. } if ticket.probe => self.enter(State::Closed { failures: VecDeque::new() }),
            State::HalfOpen { .. } | State::Open { .. } => {}
        }
    }

    fn failure(&mut self, ticket: Ticket, now: Instant) {
        if ticket.generation != self.generation {
            return;
        }
        let open = State::Open { until: now + self.settings.open_for };
        match &mut self.state {
            State::Closed { failures } => {
                while failures.front().is_some_and(|first| now.saturating_duration_since(*first) > self.settings.window)
                {
                    failures.pop_front();
                }
                failures.push_back(now);
                if failures.len() >= self.settings.failure_threshold as usize {
                    self.enter(open);
                }
            }
            State::HalfOpen { .. } if ticket.probe => self.enter(open),
            State::HalfOpen { .. } | State::Open { .. } => {}
        }
    }

    /// A permit dropped without an outcome: a probe's turn passes on.
    fn abandon(&mut self, ticket: Ticket) {
        if ticket.generation != self.generation || !ticket.probe {
            return;
        }
        if let State::HalfOpen { probing } = &mut self.state {
            *probing = false;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test
#[path = "breaker_tests.rs"]
mod tests;
