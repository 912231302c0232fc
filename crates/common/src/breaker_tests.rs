//! The breaker's rules, given/when/then on a manual clock: no sleeps, no I/O.

use super::*;
use crate::kafka::consumer::PauseScope;

const SECOND: Duration = Duration::from_secs(1);

fn settings() -> BreakerSettings {
    BreakerSettings { failure_threshold: 3, window: Duration::from_secs(10), open_for: Duration::from_secs(5) }
}

/// A machine and a time line starting at `t0`.
struct Given {
    machine: Machine,
    t0: Instant,
}

impl Given {
    fn closed() -> Self {
        Self { machine: Machine::new(settings()), t0: Instant::now() }
    }

    fn at(&self, seconds: u64) -> Instant {
        self.t0 + Duration::from_secs(seconds)
    }

    /// A call at `seconds` that fails.
    fn fail(&mut self, seconds: u64) {
        let now = self.at(seconds);
        let ticket = self.machine.check(now).unwrap();
        self.machine.failure(ticket, now);
    }

    fn succeed(&mut self, seconds: u64) {
        let ticket = self.machine.check(self.at(seconds)).unwrap();
        self.machine.success(ticket);
    }

    /// Opened by three failures at 0, 1 and 2 s: open until 7 s.
    fn open() -> Self {
        let mut given = Self::closed();
        for second in 0..3 {
            given.fail(second);
        }
        assert_eq!(given.machine.state(), CircuitState::Open);
        given
    }
}

#[test]
fn closed_lets_calls_through_and_a_success_clears_the_failures_so_far() {
    let mut given = Given::closed();
    given.fail(0);
    given.fail(1);
    given.succeed(2);
    given.fail(3);
    given.fail(4);
    assert_eq!(given.machine.state(), CircuitState::Closed, "two failures in a row since the success");
    given.fail(5);
    assert_eq!(given.machine.state(), CircuitState::Open);
}

#[test]
fn failures_farther_apart_than_the_window_do_not_open_it() {
    let mut given = Given::closed();
    given.fail(0);
    given.fail(6);
    given.fail(12); // the failure at 0 s is more than 10 s ago
    assert_eq!(given.machine.state(), CircuitState::Closed);
    given.fail(13);
    assert_eq!(given.machine.state(), CircuitState::Open, "6, 12 and 13 s lie within 10 s");
}

#[test]
fn open_refuses_calls_with_the_time_left_until_the_probe() {
    let mut given = Given::open();
    assert_eq!(given.machine.check(given.at(2)), Err(Duration::from_secs(5)));
    assert_eq!(given.machine.check(given.at(6)), Err(SECOND));
    assert_eq!(given.machine.state(), CircuitState::Open);
}

#[test]
fn after_open_for_one_probe_goes_through_and_the_others_are_refused() {
    let mut given = Given::open();
    let probe = given.machine.check(given.at(7)).unwrap();
    assert!(probe.probe);
    assert_eq!(given.machine.state(), CircuitState::HalfOpen);
    assert_eq!(given.machine.check(given.at(7)), Err(Duration::ZERO), "one probe at a time");
    assert_eq!(given.machine.check(given.at(60)), Err(Duration::ZERO), "however long the probe takes");
}

#[test]
fn a_successful_probe_closes_it_with_no_failures_counted() {
    let mut given = Given::open();
    let probe = given.machine.check(given.at(7)).unwrap();
    given.machine.success(probe);
    assert_eq!(given.machine.state(), CircuitState::Closed);
    given.fail(8);
    given.fail(9);
    assert_eq!(given.machine.state(), CircuitState::Closed, "the failures before it opened are forgotten");
}

#[test]
fn a_failed_probe_opens_it_again_for_open_for() {
    let mut given = Given::open();
    let probe = given.machine.check(given.at(8)).unwrap();
    given.machine.failure(probe, given.at(9));
    assert_eq!(given.machine.state(), CircuitState::Open);
    assert_eq!(given.machine.check(given.at(10)), Err(Duration::from_secs(4)), "open until 9 + 5 s");
    assert!(given.machine.check(given.at(14)).unwrap().probe);
}

#[test]
fn an_abandoned_probe_passes_its_turn_on() {
    let mut given = Given::open();
    let probe = given.machine.check(given.at(7)).unwrap();
    given.machine.abandon(probe);
    assert_eq!(given.machine.state(), CircuitState::HalfOpen);
    let next = given.machine.check(given.at(7)).unwrap();
    assert!(next.probe);
    given.machine.success(next);
    assert_eq!(given.machine.state(), CircuitState::Closed);
}

#[test]
fn outcomes_of_calls_let_through_before_a_state_change_are_ignored() {
    let mut given = Given::closed();
    let slow: Vec<Ticket> = (0..3).map(|_| given.machine.check(given.at(0)).unwrap()).collect();
    for second in 1..4 {
        given.fail(second);
    }
    let probe = given.machine.check(given.at(8)).unwrap();
    given.machine.success(probe);
    assert_eq!(given.machine.state(), CircuitState::Closed);
    for ticket in slow {
        given.machine.failure(ticket, given.at(9)); // calls from before the outage, failing late
    }
    assert_eq!(given.machine.state(), CircuitState::Closed, "three stale failures do not reopen it");
    given.fail(9);
    given.fail(9);
    assert_eq!(given.machine.state(), CircuitState::Closed, "nor count towards the next opening");
}

/// A clock tests move by hand.
struct ManualClock {
    start: Instant,
    elapsed: Mutex<Duration>,
}

impl ManualClock {
    fn new() -> Arc<Self> {
        Arc::new(Self { start: Instant::now(), elapsed: Mutex::default() })
    }

    fn advance(&self, by: Duration) {
        *self.elapsed.lock().unwrap() += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + *self.elapsed.lock().unwrap()
    }
}

fn gauge(registry: &Registry, dependency: &str) -> Option<f64> {
    registry
        .gather()
        .iter()
        .filter(|family| family.name() == CIRCUIT_STATE)
        .flat_map(|family| family.get_metric().to_vec())
        .find(|metric| metric.get_label().iter().any(|l| l.name() == "dependency" && l.value() == dependency))
        .map(|metric| metric.get_gauge().get_value())
}

#[tokio::test]
async fn calls_through_the_breaker_drive_its_state_and_gauge_and_an_open_breaker_means_unavailable() {
    let registry = Registry::new();
    let clock = ManualClock::new();
    let breaker = CircuitBreaker::with_clock("pricing-api", settings(), &registry, clock.clone()).unwrap();
    let _other = CircuitBreaker::new("postgres", BreakerSettings::default(), &registry).unwrap();
    assert_eq!(gauge(&registry, "pricing-api"), Some(0.0));
    assert_eq!(gauge(&registry, "postgres"), Some(0.0));

    assert_eq!(breaker.call(|| async { Ok::<_, std::io::Error>(7) }).await.unwrap(), 7);
    for _ in 0..3 {
        let failed = breaker.call(|| async { Err::<(), _>(std::io::Error::other("503")) }).await.unwrap_err();
        assert!(matches!(&failed, BreakerError::Failed { dependency, .. } if dependency == "pricing-api"));
        let handler_error = HandlerError::from(failed);
        assert!(matches!(handler_error, HandlerError::Unavailable { scope: PauseScope::Partition, .. }));
    }
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(gauge(&registry, "pricing-api"), Some(1.0));

    let mut called = false;
    let refused = breaker
        .call(|| {
            called = true;
            async { Ok::<_, std::io::Error>(()) }
        })
        .await
        .unwrap_err();
    assert!(!called, "an open breaker does not make the call");
    let BreakerError::Open(open) = refused else { panic!("{refused:?}") };
    assert_eq!(open, Open { dependency: "pricing-api".into(), retry_in: Duration::from_secs(5) });
    match HandlerError::from(open) {
        HandlerError::Unavailable { dependency, scope, source } => {
            assert_eq!((dependency.as_str(), scope), ("pricing-api", PauseScope::Partition));
            assert!(source.to_string().contains("open"), "{source}");
        }
        other => panic!("{other:?}"),
    }

    clock.advance(Duration::from_secs(5));
    let probe = breaker.check().unwrap();
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    assert_eq!(gauge(&registry, "pricing-api"), Some(2.0));
    assert!(breaker.check().is_err(), "the probe is under way");
    assert_eq!(probe.record(Ok::<_, ()>(())), Ok(()));
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(gauge(&registry, "pricing-api"), Some(0.0));

    let again = CircuitBreaker::new("pricing-api", settings(), &registry);
    assert!(matches!(again, Err(BreakerSetupError::Metrics(_))), "one breaker per dependency and registry");
}

#[test]
fn settings_read_durations_refuse_unknown_keys_and_are_validated() {
    let settings: BreakerSettings = toml::from_str("failure_threshold = 2\nopen_for = \"250ms\"").unwrap();
    assert_eq!(settings.failure_threshold, 2);
    assert_eq!(settings.open_for, Duration::from_millis(250));
    assert_eq!(settings.window, BreakerSettings::default().window);
    assert!(toml::from_str::<BreakerSettings>("threshold = 2").is_err());
    let zero = BreakerSettings { failure_threshold: 0, ..BreakerSettings::default() };
    assert!(matches!(zero.validate(), Err(BreakerSetupError::Invalid { key: "failure_threshold", .. })));
    let registry = Registry::new();
    assert!(CircuitBreaker::new("x", BreakerSettings { open_for: Duration::ZERO, ..settings }, &registry).is_err());
}
