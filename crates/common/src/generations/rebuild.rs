//! Rebuilding a service's tables side by side, swapping them in, and rolling back: what
//! `eventline rebuild <service>` runs (and what the admin API calls), for any
//! [`Rebuildable`] service.
//!
//! [`rebuild`] builds the service (as its process would, with metrics nobody serves), creates
//! the next generation (its own tables and consumer group), runs a consumer with the service's
//! own handler for that generation from the earliest offsets while the running service keeps
//! serving and applying to the active generation, reports progress, and once the new group is
//! near the end of the log (lag within one batch) and, checked under the service's write lock,
//! its offsets have reached the active group's on every partition, swaps in one transaction.
//! The running service notices within [`WATCH_INTERVAL`](crate::service::WATCH_INTERVAL) and
//! moves its consumer to the new generation. Interrupted (or failing) before the swap, the new
//! generation is retired and its tables dropped; the active one was never touched.
//! [`rollback`] makes the previous generation active again; [`status`] lists them.

use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::Row as _;
use tokio_util::sync::CancellationToken;

use super::{now_ms, Generation, GenerationError, GenerationState, Generations, Started, TransitionError};
use crate::catalog::Catalog;
use crate::db::Database;
use crate::kafka::consumer::{
    group_lag, ConsumerError, ConsumerMetrics, ConsumerProgress, ConsumerRuntime, OffsetMode, OffsetSource,
    OffsetStore, SettingsError, StartPosition,
};
use crate::kafka::KafkaSettings;
use crate::registry_client::RegistryClient;
use crate::service::{ConsumerRun, ConsumerService, Platform, Rebuildable, RunTarget, ServiceContext, ServiceSettings};

/// How often a rebuild reports progress.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(2);
/// How often the builder says it is alive.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// A build whose builder has been silent this long is dead (killed) and is cleaned up by the
/// next rebuild.
pub const STALE_AFTER: Duration = Duration::from_secs(30);
/// How often the build's lag is measured (and a swap tried once it is zero).
const CHECK_INTERVAL: Duration = Duration::from_millis(500);
/// How long the build's consumer may take to stop.
const STOP_DEADLINE: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("invalid settings in [consumers.{service}]")]
    Config {
        service: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("invalid consumer settings")]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Generations(#[from] GenerationError),
    #[error("cannot build the {service} service (its tables, its state)")]
    Build {
        service: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A swap compares the groups' offsets in the database, beside the tables.
    #[error("{service} cannot be rebuilt with its offsets kept in Kafka: set [consumers.{service}.consumer] offset_mode = \"transactional\"")]
    OffsetsNotInTheDatabase { service: &'static str },
    #[error("cannot register the rebuild's metrics")]
    Metrics(#[from] prometheus::Error),
    #[error("the consumer building generation {generation} failed")]
    Consumer {
        generation: i64,
        #[source]
        source: ConsumerError,
    },
    #[error("the consumer building generation {generation} stopped by itself")]
    ConsumerStopped { generation: i64 },
    #[error("the consumer building generation {generation} did not stop within {STOP_DEADLINE:?}")]
    StopTimedOut { generation: i64 },
    #[error(
        "generation {generation} was cleaned up by another command while it was being built \
         (was this rebuild paused for longer than {STALE_AFTER:?}?)"
    )]
    Lost { generation: i64 },
}

/// What a rebuild needs: the service's settings and where everything is.
#[derive(Clone)]
pub struct RebuildContext<S> {
    pub settings: S,
    pub db: Database,
    pub kafka: KafkaSettings,
    pub registry_client: RegistryClient,
    pub catalog: Catalog,
}

/// What happens during a rebuild, as it happens.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RebuildEvent {
    /// A build whose builder died (no heartbeat for [`STALE_AFTER`]) was retired and its
    /// tables dropped before this one started.
    CleanedUp {
        generation: i64,
    },
    /// The new generation exists (building) with its tables; `serving` keeps serving.
    Started {
        generation: i64,
        group_id: String,
        table_prefix: String,
        serving: i64,
    },
    Progress(BuildProgress),
}

/// Where a build is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BuildProgress {
    pub generation: i64,
    /// Events the build's handler applied or skipped as duplicates so far.
    pub events_handled: u64,
    /// Events in the log the build has not applied yet (its group's lag on the topics).
    pub lag: i64,
    pub events_per_second: f64,
    /// At the rate so far; `None` before there is a rate.
    pub seconds_left: Option<f64>,
    pub elapsed_seconds: f64,
    /// Partitions where the build, near the end of the log, has not yet reached the active
    /// generation's group when a swap was last tried (the swap waits for them).
    pub behind_active_partitions: usize,
}

impl BuildProgress {
    fn measure(generation: i64, handled: u64, lag: i64, elapsed: Duration, behind: usize) -> Self {
        let seconds = elapsed.as_secs_f64();
        let rate = if seconds > 0.0 { handled as f64 / seconds } else { 0.0 };
        Self {
            generation,
            events_handled: handled,
            lag,
            events_per_second: rate,
            seconds_left: (rate > 0.0).then(|| lag.max(0) as f64 / rate),
            elapsed_seconds: seconds,
            behind_active_partitions: behind,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RebuildOutcome {
    /// The new generation is active; the one before is previous (kept for a rollback).
    Swapped,
    /// Stopped before the swap: the new generation is retired and its tables dropped; the
    /// active generation is untouched.
    Interrupted,
}

/// How a rebuild ended.
#[derive(Debug, Clone, Serialize)]
pub struct RebuildSummary {
    pub outcome: RebuildOutcome,
    /// The generation built.
    pub generation: i64,
    pub group_id: String,
    pub table_prefix: String,
    /// The generation that was serving during the build (previous after a swap, still active
    /// after an interruption).
    pub serving: i64,
    /// Generations retired by the swap (the previous one from before, tables dropped).
    pub retired: Vec<i64>,
    /// Dead builds cleaned up before this one started.
    pub cleaned_up: Vec<i64>,
    pub events_handled: u64,
    pub elapsed_seconds: f64,
}

/// One generation, for `--status`.
#[derive(Debug, Clone, Serialize)]
pub struct GenerationStatus {
    #[serde(flatten)]
    pub generation: Generation,
    /// Events it has applied ([`GenerationTables::applied_events`](super::GenerationTables));
    /// `None` once retired, or when the service does not count them.
    pub applied_events: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GenerationsStatus {
    pub active: i64,
    pub generations: Vec<GenerationStatus>,
}

/// What a rollback did.
#[derive(Debug, Clone, Serialize)]
pub struct RollbackSummary {
    /// Active again; the running service resumes it from its group's own offsets.
    pub activated: Generation,
    /// Was active, now previous (a second rollback returns to it).
    pub demoted: i64,
}

/// The generations of a service's tables, and how many events each has applied.
pub async fn status(generations: &Generations) -> Result<GenerationsStatus, GenerationError> {
    let listed = generations.list().await?;
    let active = listed
        .iter()
        .find(|g| g.state == GenerationState::Active)
        .map(|g| g.generation)
        .ok_or(TransitionError::NoActive)?;
    let db = generations.database();
    let mut with_counts = Vec::with_capacity(listed.len());
    for generation in listed {
        let applied_events = match generations.tables().applied_events(&generation.table_prefix) {
            Some(sql) if generation.state != GenerationState::Retired => {
                Some(sqlx::query(&sql).fetch_one(db.pool()).await?.try_get::<i64, _>(0)?)
            }
            _ => None,
        };
        with_counts.push(GenerationStatus { generation, applied_events });
    }
    Ok(GenerationsStatus { active, generations: with_counts })
}

/// Makes the previous generation active again (the active one becomes previous).
pub async fn rollback(generations: &Generations) -> Result<RollbackSummary, GenerationError> {
    let transition = generations.rollback(now_ms()).await?;
    let activated = transition.activates().ok_or(TransitionError::NoPrevious)?;
    let demoted =
        transition.changes.iter().find(|c| c.from == GenerationState::Active).map_or(activated, |c| c.generation);
    let activated =
        generations.list().await?.into_iter().find(|g| g.generation == activated).ok_or(TransitionError::NoActive)?;
    Ok(RollbackSummary { activated, demoted })
}

/// Builds the next generation of `S`'s tables from the earliest offsets and swaps it in (see
/// the module docs). `stop` interrupts the build (before the swap); `on_event` hears of
/// progress.
pub async fn rebuild<S: Rebuildable>(
    context: RebuildContext<S::Settings>,
    stop: CancellationToken,
    mut on_event: impl FnMut(&RebuildEvent),
) -> Result<RebuildSummary, RebuildError> {
    let started_at = Instant::now();
    let service = S::NAME;
    S::validate(&context.settings).map_err(|source| RebuildError::Config { service, source: source.into() })?;
    context.settings.consumer().validate()?;
    if context.settings.consumer().offset_mode != OffsetMode::Transactional {
        return Err(RebuildError::OffsetsNotInTheDatabase { service });
    }
    let platform = Platform {
        kafka: context.kafka.clone(),
        db: context.db.clone(),
        registry_client: context.registry_client.clone(),
        catalog: context.catalog.clone(),
        metrics: prometheus::Registry::new(),
    };
    let built = S::build(&ServiceContext::new(service, platform, context.settings.clone()))
        .await
        .map_err(|source| RebuildError::Build { service, source: source.into() })?;
    let generations = S::generations(context.db.clone(), &context.settings.consumer().group_id);
    generations.ensure().await?;
    let stale_after_ms = i64::try_from(STALE_AFTER.as_millis()).unwrap_or(i64::MAX);
    let started = generations.begin_build(now_ms(), stale_after_ms).await?;
    for generation in &started.cleaned_up {
        on_event(&RebuildEvent::CleanedUp { generation: *generation });
    }
    on_event(&RebuildEvent::Started {
        generation: started.building.generation,
        group_id: started.building.group_id.clone(),
        table_prefix: started.building.table_prefix.clone(),
        serving: started.serving.generation,
    });
    let build = Build { context: &context, service: &built, generations: &generations, started: &started, started_at };
    match build.run(&stop, &mut on_event).await {
        Ok(summary) => Ok(summary),
        Err(error @ RebuildError::Lost { .. }) => Err(error),
        Err(error) => {
            // Never leave a half-built generation behind: the active one was not touched.
            if let Err(cleanup) = generations.abandon(started.building.generation).await {
                tracing::error!(
                    service,
                    error = %format!("{cleanup:#}"),
                    generation = started.building.generation,
                    "cannot retire the failed build; the next rebuild cleans it up"
                );
            }
            Err(error)
        }
    }
}

/// One build in progress.
struct Build<'a, S: ConsumerService> {
    context: &'a RebuildContext<S::Settings>,
    service: &'a S,
    generations: &'a Generations,
    started: &'a Started,
    started_at: Instant,
}

impl<S: ConsumerService> Build<'_, S> {
    async fn run(
        &self,
        stop: &CancellationToken,
        on_event: &mut impl FnMut(&RebuildEvent),
    ) -> Result<RebuildSummary, RebuildError> {
        let number = self.started.building.generation;
        let stopping = CancellationToken::new();
        let (runtime, progress) = self.runtime(stopping.clone())?;
        let running = runtime.run(stopping.clone());
        tokio::pin!(running);
        let consumer = self.context.settings.consumer();
        let topics = consumer.topics.clone();
        // Under steady traffic the lag is rarely exactly zero at the moment it is measured;
        // what decides is the swap's own check, under the write lock, that the build has
        // reached the active group on every partition. So a swap is tried once the build is
        // within one batch of the end of the log.
        let swap_within = i64::try_from(consumer.batch_max_size).unwrap_or(i64::MAX);
        let offsets = OffsetStore::new(self.context.db.clone());
        let mut check = tokio::time::interval(CHECK_INTERVAL);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_heartbeat = Instant::now();
        let mut last_report: Option<Instant> = None;
        let mut behind_active = 0;
        let outcome = loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => break RebuildOutcome::Interrupted,
                ran = &mut running => {
                    return Err(match ran {
                        Ok(()) => RebuildError::ConsumerStopped { generation: number },
                        Err(source) => RebuildError::Consumer { generation: number, source },
                    });
                }
                _ = check.tick() => {}
            }
            if last_heartbeat.elapsed() >= HEARTBEAT_INTERVAL {
                last_heartbeat = Instant::now();
                match self.generations.heartbeat(number, now_ms()).await {
                    Ok(true) => {}
                    Ok(false) => {
                        stop_consumer(&stopping, running.as_mut(), number).await?;
                        return Err(RebuildError::Lost { generation: number });
                    }
                    Err(error) => {
                        tracing::warn!(error = %format!("{error:#}"), "cannot record the build's heartbeat")
                    }
                }
            }
            let lag = match group_lag(
                &self.context.kafka,
                &self.started.building.group_id,
                &topics,
                OffsetSource::Store(&offsets),
            )
            .await
            {
                Ok(partitions) => partitions.iter().map(|p| p.lag).sum::<i64>(),
                Err(error) => {
                    tracing::warn!(error = %format!("{error:#}"), "cannot measure the build's lag; trying again");
                    continue;
                }
            };
            if last_report.is_none_or(|at| at.elapsed() >= PROGRESS_INTERVAL) {
                last_report = Some(Instant::now());
                on_event(&RebuildEvent::Progress(self.progress(&progress, lag, behind_active)));
            }
            if lag > swap_within {
                continue;
            }
            match self.generations.swap(number, &topics, now_ms()).await {
                Ok(transition) => {
                    // Swapped: a consumer slow to stop no longer matters to the outcome.
                    if let Err(error) = stop_consumer(&stopping, running.as_mut(), number).await {
                        tracing::warn!(error = %format!("{error:#}"), "the build's consumer did not stop cleanly after the swap");
                    }
                    return Ok(self.summary(RebuildOutcome::Swapped, transition.drop_tables_of, &progress));
                }
                // The live service applied events the build has not reached yet; go on.
                Err(GenerationError::NotCaughtUp { behind, .. }) => behind_active = behind.len(),
                Err(error) => {
                    stop_consumer(&stopping, running.as_mut(), number).await?;
                    return Err(error.into());
                }
            }
        };
        stop_consumer(&stopping, running.as_mut(), number).await?;
        self.generations.abandon(number).await?;
        Ok(self.summary(outcome, Vec::new(), &progress))
    }

    /// The build's consumer: the service's handler for the new generation, the new group,
    /// from the earliest offsets, its offsets kept in the database.
    fn runtime(
        &self,
        stopping: CancellationToken,
    ) -> Result<(ConsumerRuntime<S::Handler>, ConsumerProgress), RebuildError> {
        let building = &self.started.building;
        let target = RunTarget { group_id: building.group_id.clone(), generation: building.generation };
        let handler = self.service.handler(&ConsumerRun { target, stopping });
        let mut settings = self.context.settings.consumer().clone();
        settings.group_id = building.group_id.clone();
        settings.start = StartPosition::Earliest;
        let runtime = ConsumerRuntime::new(
            settings,
            self.context.kafka.clone(),
            self.context.registry_client.clone(),
            self.context.catalog.clone(),
            handler,
            // A rebuild is a command, not a service: its consumer's metrics are not served.
            ConsumerMetrics::registered_in(&prometheus::Registry::new())?,
        )
        .with_offset_store(OffsetStore::new(self.context.db.clone()));
        let progress = runtime.progress();
        Ok((runtime, progress))
    }

    fn progress(&self, progress: &ConsumerProgress, lag: i64, behind: usize) -> BuildProgress {
        BuildProgress::measure(
            self.started.building.generation,
            progress.handled_total(),
            lag,
            self.started_at.elapsed(),
            behind,
        )
    }

    fn summary(&self, outcome: RebuildOutcome, retired: Vec<i64>, progress: &ConsumerProgress) -> RebuildSummary {
        RebuildSummary {
            outcome,
            generation: self.started.building.generation,
            group_id: self.started.building.group_id.clone(),
            table_prefix: self.started.building.table_prefix.clone(),
            serving: self.started.serving.generation,
            retired,
            cleaned_up: self.started.cleaned_up.clone(),
            events_handled: progress.handled_total(),
            elapsed_seconds: self.started_at.elapsed().as_secs_f64(),
        }
    }
}

/// Stops the build's consumer and waits for it to drain (bounded).
async fn stop_consumer(
    stopping: &CancellationToken,
    running: std::pin::Pin<&mut impl std::future::Future<Output = Result<(), ConsumerError>>>,
    generation: i64,
) -> Result<(), RebuildError> {
    stopping.cancel();
    match tokio::time::timeout(STOP_DEADLINE, running).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(source)) => Err(RebuildError::Consumer { generation, source }),
        Err(_) => Err(RebuildError::StopTimedOut { generation }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_estimates_the_time_left_at_the_rate_so_far() {
        let progress = BuildProgress::measure(2, 1_000, 500, Duration::from_secs(4), 0);
        assert_eq!(progress.events_per_second, 250.0);
        assert_eq!(progress.seconds_left, Some(2.0));
        let at_start = BuildProgress::measure(2, 0, 500, Duration::ZERO, 0);
        assert_eq!((at_start.events_per_second, at_start.seconds_left), (0.0, None));
    }
}
