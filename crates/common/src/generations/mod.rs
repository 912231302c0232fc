//! Generations of a consumer service's tables: the same tables built again from the start of
//! the log, side by side, and swapped in atomically (`eventline rebuild <service>`), for any
//! service that implements [`Rebuildable`](crate::service::Rebuildable) (the projector today).
//!
//! Each generation is one row of `eventline_generations`, keyed by (service, generation): its
//! own tables (prefix [`table_prefix`], `<service>_g<N>_`) and its own consumer group
//! ([`group_of`], `<group>.g<N>`), so it keeps its own offsets. Generation 1 is the service's
//! original tables (`<service>_`) and its configured group. Transitions:
//!
//! - building → active: the swap at the end of a build; in the same transaction the active
//!   one becomes previous, and an older previous one retired (its tables dropped);
//! - active ⇄ previous: a rollback (the two trade places, so a second rollback undoes it);
//! - building → retired: the build was interrupted or failed, or its builder died (no
//!   heartbeat); its tables are dropped.
//!
//! Exactly one generation per service is active; at most one is previous (the rollback target)
//! and at most one is building. This module is the pure part: states, names and the
//! transitions, planned from the rows as they are; [`Generations`] runs them in SQL, one
//! transaction each, under the service's write lock; [`rebuild`], [`rollback`] and [`status`]
//! are what `eventline rebuild <service>` and the admin API run.

mod rebuild;
mod store;

use serde::Serialize;

use crate::kafka::consumer::TopicPartition;

pub use rebuild::{
    rebuild, rollback, status, BuildProgress, GenerationStatus, GenerationsStatus, RebuildContext, RebuildError,
    RebuildEvent, RebuildOutcome, RebuildSummary, RollbackSummary, HEARTBEAT_INTERVAL, PROGRESS_INTERVAL, STALE_AFTER,
};
pub use store::{ensure, now_ms, state_of, GenerationError, Generations, Started};

/// The first generation: the service's original tables, created by its own migrations.
pub const FIRST: i64 = 1;

/// What the generations need to know of a service's tables: how to create and drop one
/// generation's (given its table prefix, [`table_prefix`]) and the write lock every write
/// transaction of the service takes first. A service's handler writes to the generation its
/// run names ([`ConsumerRun::target`](crate::service::ConsumerRun)), under that lock, and only
/// while [`state_of`] says it [is writable](GenerationState::is_writable).
pub trait GenerationTables: Send + Sync + 'static {
    /// The statement that takes the service's write lock (an `UPDATE` of one row): batches of
    /// every generation and every transition run it first, so they run one at a time.
    fn write_lock(&self) -> &'static str;
    /// The statements creating a later generation's tables with the columns and indexes of
    /// the first one's, named `<prefix><table>`.
    fn create_statements(&self, prefix: &str) -> Vec<String>;
    /// The statements dropping a generation's tables; absent ones are not an error.
    fn drop_statements(&self, prefix: &str) -> Vec<String>;
    /// A query answering one count (the events a generation has applied) for `--status`.
    fn applied_events(&self, prefix: &str) -> Option<String> {
        let _ = prefix;
        None
    }
    /// A table where the service kept its generations before `eventline_generations`, with
    /// the same columns minus `service`: copied once, at first use (see
    /// [`Generations::ensure`]).
    fn legacy_table(&self) -> Option<&'static str> {
        None
    }
}

/// Where a generation is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GenerationState {
    /// Being built from the start of the log by `eventline rebuild <service>`; not served.
    Building,
    /// Served (the service's queries read it) and followed by the running service.
    Active,
    /// The one that was active before the last swap: kept, with its rows and offsets, so a
    /// rollback can make it active again.
    Previous,
    /// Given up: its tables are dropped.
    Retired,
}

impl GenerationState {
    pub fn as_str(self) -> &'static str {
        match self {
            GenerationState::Building => "building",
            GenerationState::Active => "active",
            GenerationState::Previous => "previous",
            GenerationState::Retired => "retired",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "building" => Some(GenerationState::Building),
            "active" => Some(GenerationState::Active),
            "previous" => Some(GenerationState::Previous),
            "retired" => Some(GenerationState::Retired),
            _ => None,
        }
    }

    /// Whether batches may be applied to a generation in this state: a consumer that still
    /// runs for a generation that was just swapped out must not move it on, or its offsets and
    /// rows would no longer be what a rollback expects. A handler checks it with [`state_of`]
    /// in its batch's transaction, after taking the service's write lock.
    pub fn is_writable(self) -> bool {
        matches!(self, GenerationState::Building | GenerationState::Active)
    }
}

impl std::fmt::Display for GenerationState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One generation of one service's tables: a row of `eventline_generations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Generation {
    pub generation: i64,
    /// The consumer group whose offsets belong to this generation's tables.
    pub group_id: String,
    /// Its tables are `<table_prefix><table>` (the projector's `projector_g2_orders`, …).
    pub table_prefix: String,
    pub state: GenerationState,
    /// Unix milliseconds.
    pub created_at_ms: i64,
    /// When it last became active.
    pub activated_at_ms: Option<i64>,
    /// While building: the builder's last sign of life.
    pub heartbeat_at_ms: Option<i64>,
}

/// The table prefix of `service`'s `generation`: `<service>_` for the first (`projector_`),
/// `<service>_g<N>_` after (`projector_g2_`).
pub fn table_prefix(service: &str, generation: i64) -> String {
    if generation == FIRST {
        format!("{service}_")
    } else {
        format!("{service}_g{generation}_")
    }
}

/// The consumer group of `generation`: the configured group for the first, `<group>.g<N>`
/// after, so each generation has offsets of its own.
pub fn group_of(configured: &str, generation: i64) -> String {
    if generation == FIRST {
        configured.to_owned()
    } else {
        format!("{configured}.g{generation}")
    }
}

/// Why a transition cannot happen from the generations as they are.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum TransitionError {
    #[error(
        "generation {generation} is being built right now (its builder's last heartbeat was \
         {heartbeat_age_ms} ms ago): wait for that rebuild to finish or interrupt it; a build \
         whose builder was killed is cleaned up once its heartbeat is {stale_after_ms} ms old"
    )]
    AlreadyBuilding { generation: i64, heartbeat_age_ms: i64, stale_after_ms: i64 },
    #[error("no generation is active (eventline_generations is damaged)")]
    NoActive,
    #[error(
        "there is no previous generation to roll back to: a rollback needs a completed rebuild \
         (see `eventline rebuild <service> --status`)"
    )]
    NoPrevious,
    #[error("generation {generation} is no longer being built (it is {state}); another command changed it")]
    NotBuilding { generation: i64, state: String },
}

/// A change of state of one generation; applied only if it is still in `from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    pub generation: i64,
    pub from: GenerationState,
    pub to: GenerationState,
}

/// The changes of one transition, in the order they are made (the one-active rule holds after
/// each), and the generations whose tables go with them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Transition {
    pub changes: Vec<Change>,
    pub drop_tables_of: Vec<i64>,
}

impl Transition {
    /// `generations` after this transition (what the SQL does, in memory).
    pub fn apply_to(&self, generations: &[Generation]) -> Vec<Generation> {
        let mut after = generations.to_vec();
        for change in &self.changes {
            if let Some(row) = after.iter_mut().find(|g| g.generation == change.generation && g.state == change.from) {
                row.state = change.to;
            }
        }
        after
    }

    /// The generation this transition makes active, if any.
    pub fn activates(&self) -> Option<i64> {
        self.changes.iter().find(|c| c.to == GenerationState::Active).map(|c| c.generation)
    }
}

fn in_state(generations: &[Generation], state: GenerationState) -> impl Iterator<Item = &Generation> {
    generations.iter().filter(move |g| g.state == state)
}

fn active(generations: &[Generation]) -> Result<&Generation, TransitionError> {
    in_state(generations, GenerationState::Active).next().ok_or(TransitionError::NoActive)
}

/// Starting a build: the new generation's number, the one that keeps serving, and builds whose
/// builder stopped sending heartbeats (killed) that are retired first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildPlan {
    pub generation: i64,
    pub serving: i64,
    pub stale: Transition,
}

/// Plans a new build at `now_ms`. A build whose heartbeat is younger than `stale_after_ms` is
/// still running, and a second one is refused; an older one is retired with its tables.
/// Numbers are never reused (retired rows stay), so neither are groups or table names.
pub fn plan_build(generations: &[Generation], now_ms: i64, stale_after_ms: i64) -> Result<BuildPlan, TransitionError> {
    let serving = active(generations)?.generation;
    let mut stale = Transition::default();
    for building in in_state(generations, GenerationState::Building) {
        let heartbeat = building.heartbeat_at_ms.unwrap_or(building.created_at_ms);
        let age = now_ms.saturating_sub(heartbeat);
        if age < stale_after_ms {
            return Err(TransitionError::AlreadyBuilding {
                generation: building.generation,
                heartbeat_age_ms: age.max(0),
                stale_after_ms,
            });
        }
        stale.changes.push(Change {
            generation: building.generation,
            from: GenerationState::Building,
            to: GenerationState::Retired,
        });
        stale.drop_tables_of.push(building.generation);
    }
    let last = generations.iter().map(|g| g.generation).max().unwrap_or(FIRST);
    Ok(BuildPlan { generation: last + 1, serving, stale })
}

/// The swap at the end of a build: `building` becomes active, the active one previous, and a
/// previous one from before is retired with its tables.
pub fn plan_swap(generations: &[Generation], building: i64) -> Result<Transition, TransitionError> {
    let row = generations.iter().find(|g| g.generation == building);
    match row {
        Some(row) if row.state == GenerationState::Building => {}
        other => {
            return Err(TransitionError::NotBuilding {
                generation: building,
                state: other.map_or_else(|| "gone".to_owned(), |g| g.state.to_string()),
            })
        }
    }
    let serving = active(generations)?.generation;
    let mut transition = Transition::default();
    for previous in in_state(generations, GenerationState::Previous) {
        transition.changes.push(Change {
            generation: previous.generation,
            from: GenerationState::Previous,
            to: GenerationState::Retired,
        });
        transition.drop_tables_of.push(previous.generation);
    }
    transition.changes.push(Change {
        generation: serving,
        from: GenerationState::Active,
        to: GenerationState::Previous,
    });
    transition.changes.push(Change {
        generation: building,
        from: GenerationState::Building,
        to: GenerationState::Active,
    });
    Ok(transition)
}

/// A rollback: the previous generation becomes active again and the active one previous (so a
/// second rollback undoes the first).
pub fn plan_rollback(generations: &[Generation]) -> Result<Transition, TransitionError> {
    let serving = active(generations)?.generation;
    let previous = in_state(generations, GenerationState::Previous)
        .map(|g| g.generation)
        .max()
        .ok_or(TransitionError::NoPrevious)?;
    Ok(Transition {
        changes: vec![
            Change { generation: serving, from: GenerationState::Active, to: GenerationState::Previous },
            Change { generation: previous, from: GenerationState::Previous, to: GenerationState::Active },
        ],
        drop_tables_of: Vec::new(),
    })
}

/// Giving up a build (interrupted or failed): it is retired and its tables dropped; the active
/// generation is not touched.
pub fn plan_abandon(generations: &[Generation], building: i64) -> Result<Transition, TransitionError> {
    match generations.iter().find(|g| g.generation == building) {
        Some(row) if row.state == GenerationState::Building => Ok(Transition {
            changes: vec![Change {
                generation: building,
                from: GenerationState::Building,
                to: GenerationState::Retired,
            }],
            drop_tables_of: vec![building],
        }),
        other => Err(TransitionError::NotBuilding {
            generation: building,
            state: other.map_or_else(|| "gone".to_owned(), |g| g.state.to_string()),
        }),
    }
}

/// A partition where one group's offset is behind another's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Behind {
    pub topic: String,
    pub partition: i32,
    /// The candidate's next offset (`None`: it has not started there).
    pub next_offset: Option<i64>,
    pub reference: i64,
}

/// The partitions of `topics` where `candidate` has not reached `reference` (both: next
/// offsets by partition). A swap waits until there are none, so that no answer read from the
/// service's tables goes back in time when the new generation takes over.
pub fn behind(
    topics: &[String],
    reference: &[(TopicPartition, i64)],
    candidate: &[(TopicPartition, i64)],
) -> Vec<Behind> {
    reference
        .iter()
        .filter(|((topic, _), _)| topics.contains(topic))
        .filter_map(|(key, reference)| {
            let next = candidate.iter().find(|(k, _)| k == key).map(|(_, n)| *n);
            match next {
                Some(next) if next >= *reference => None,
                _ => Some(Behind { topic: key.0.clone(), partition: key.1, next_offset: next, reference: *reference }),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
