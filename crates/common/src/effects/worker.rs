//! The effect worker: takes due effects from the ledger, performs them (a few at a time), and
//! records each outcome. It runs beside the consumer, so consuming never waits for a recipient.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use prometheus::{IntCounterVec, Opts, Registry};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::ledger::now_ms;
use super::{Effect, EffectLedger, RetrySchedule};
use crate::metrics::register;

pub const EFFECTS_TOTAL: &str = "eventline_effects_total";
/// How long the worker waits after the ledger could not be read before it tries again.
const LEDGER_RETRY: Duration = Duration::from_secs(1);

/// What a service does to perform an effect.
pub trait Perform: Send + Sync + 'static {
    /// One try of `effect`. Carry [`Effect::effect_id`] to the recipient as its idempotency id.
    fn perform(&self, effect: &Effect) -> impl Future<Output = Tried> + Send;
}

/// How one try went.
#[derive(Debug, Clone, PartialEq)]
pub enum Tried {
    Done,
    /// It failed but may work later: tried again on the schedule, or after `after` (a
    /// `Retry-After` the recipient asked for) when given.
    Again {
        error: String,
        after: Option<Duration>,
    },
    /// It can never work (an address that does not exist, an endpoint that is gone): failed for
    /// good, with the reason.
    Failed {
        error: String,
    },
}

impl Tried {
    pub fn again(error: impl Into<String>) -> Self {
        Tried::Again { error: error.into(), after: None }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EffectWorkerSettings {
    /// Effects performed at the same time.
    pub concurrency: usize,
    /// How often the ledger is looked at when nobody said there is new work.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// The longest one try may take; a try still running then counts as failed.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// How long a taken effect is this worker's: after it, another worker (or this one after a
    /// restart) may take it again. Longer than `timeout`.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    pub schedule: RetrySchedule,
}

impl Default for EffectWorkerSettings {
    fn default() -> Self {
        Self {
            concurrency: 8,
            poll_interval: Duration::from_millis(250),
            timeout: Duration::from_secs(30),
            lease: Duration::from_secs(60),
            schedule: RetrySchedule::default(),
        }
    }
}

impl EffectWorkerSettings {
    pub fn validate(&self) -> Result<(), String> {
        if self.concurrency == 0 {
            return Err("effects.concurrency must be at least 1".into());
        }
        if self.lease <= self.timeout {
            return Err("effects.lease must be longer than effects.timeout".into());
        }
        self.schedule.validate().map_err(|problem| format!("effects.schedule: {problem}"))
    }
}

/// Performs the due effects of one ledger.
pub struct EffectWorker<P> {
    ledger: EffectLedger,
    performer: Arc<P>,
    settings: EffectWorkerSettings,
    wake: Arc<Notify>,
    outcomes: IntCounterVec,
    service: String,
}

impl<P: Perform> EffectWorker<P> {
    /// Its metric, `eventline_effects_total{service, outcome}`, goes into `registry`.
    pub fn new(
        ledger: EffectLedger,
        service: &str,
        performer: P,
        settings: EffectWorkerSettings,
        registry: &Registry,
    ) -> Result<Self, prometheus::Error> {
        let outcomes = IntCounterVec::new(
            Opts::new(EFFECTS_TOTAL, "Tries of side effects, by outcome (done, again, failed)"),
            &["service", "outcome"],
        )?;
        let outcomes = match register(registry, outcomes.clone()) {
            Ok(registered) => registered,
            Err(prometheus::Error::AlreadyReg) => outcomes,
            Err(error) => return Err(error),
        };
        Ok(Self {
            ledger,
            performer: Arc::new(performer),
            settings,
            wake: Arc::new(Notify::new()),
            outcomes,
            service: service.to_owned(),
        })
    }

    /// Notify it after a commit that recorded effects, so they go out now rather than at the
    /// next poll.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Performs due effects until `token` is cancelled, then lets the tries in progress finish.
    pub async fn run(self: Arc<Self>, token: CancellationToken) -> anyhow::Result<()> {
        let slots = Arc::new(Semaphore::new(self.settings.concurrency));
        let mut tries = JoinSet::new();
        let this = self;
        while !token.is_cancelled() {
            while tries.try_join_next().is_some() {}
            let free = u32::try_from(slots.available_permits()).unwrap_or(u32::MAX);
            let taken = if free == 0 {
                Vec::new()
            } else {
                match this.ledger.take_due(now_ms(), this.settings.lease, free).await {
                    Ok(taken) => taken,
                    Err(error) => {
                        tracing::warn!(service = %this.service, error = %format!("{:#}", anyhow::Error::from(error)), "cannot take due effects; trying again");
                        tokio::select! {
                            () = token.cancelled() => break,
                            () = tokio::time::sleep(LEDGER_RETRY) => continue,
                        }
                    }
                }
            };
            let idle = taken.is_empty();
            for effect in taken {
                let Ok(permit) = slots.clone().acquire_owned().await else { break };
                let this = this.clone();
                tries.spawn(async move {
                    this.try_once(effect).await;
                    drop(permit);
                });
            }
            if idle {
                tokio::select! {
                    () = token.cancelled() => break,
                    () = this.wake.notified() => {}
                    () = tokio::time::sleep(this.settings.poll_interval) => {}
                    Some(_) = tries.join_next(), if !tries.is_empty() => {}
                }
            }
        }
        while tries.join_next().await.is_some() {}
        Ok(())
    }

    async fn try_once(&self, effect: Effect) {
        let tried = match tokio::time::timeout(self.settings.timeout, self.performer.perform(&effect)).await {
            Ok(tried) => tried,
            Err(_) => Tried::again(format!("no answer within {:?}", self.settings.timeout)),
        };
        let (outcome, recorded) = match &tried {
            Tried::Done => ("done", self.ledger.done(effect.effect_id).await),
            Tried::Again { error, after } => {
                let delay = after.or_else(|| self.settings.schedule.next_delay(effect.attempts, rand::random::<f64>()));
                match delay {
                    Some(delay) => {
                        let due = now_ms().saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
                        tracing::info!(service = %self.service, effect_id = %effect.effect_id, kind = %effect.key.kind,
                            attempts = effect.attempts, retry_in = ?delay, %error, "effect failed; trying again later");
                        ("again", self.ledger.again(effect.effect_id, due, error).await)
                    }
                    None => {
                        tracing::warn!(service = %self.service, effect_id = %effect.effect_id, kind = %effect.key.kind,
                            attempts = effect.attempts, %error, "effect failed on its last try; it is failed for good");
                        ("failed", self.ledger.fail(effect.effect_id, error).await)
                    }
                }
            }
            Tried::Failed { error } => {
                tracing::warn!(service = %self.service, effect_id = %effect.effect_id, kind = %effect.key.kind,
                    %error, "effect cannot be performed; it is failed for good");
                ("failed", self.ledger.fail(effect.effect_id, error).await)
            }
        };
        self.outcomes.with_label_values(&[&self.service, outcome]).inc();
        if let Err(error) = recorded {
            // The lease runs out and the effect is tried again, with the same id: the window.
            tracing::warn!(service = %self.service, effect_id = %effect.effect_id, outcome,
                error = %format!("{:#}", anyhow::Error::from(error)), "cannot record how an effect went");
        }
    }
}
