//! The generations in SQL (`projector_generations`): reading them, and each transition in one
//! transaction that first takes the shared write lock, so no batch of any generation is applied
//! halfway through it, and a batch that was waiting for the lock sees the new states.

use std::collections::BTreeMap;

use chrono::Utc;
use eventline_common::db::Database;
use eventline_common::kafka::consumer::TopicPartition;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};

use super::{
    behind, group_of, plan_abandon, plan_build, plan_rollback, plan_swap, table_prefix, Behind, Generation,
    GenerationState, Transition, TransitionError,
};
use crate::store::tables::{Tables, LOCK};

const COLUMNS: &str = "generation, group_id, table_prefix, state, created_at_ms, activated_at_ms, heartbeat_at_ms";
const INSERT_BUILDING: &str = "INSERT INTO projector_generations \
     (generation, group_id, table_prefix, state, created_at_ms, activated_at_ms, heartbeat_at_ms) \
     VALUES ($1, $2, $3, 'building', $4, NULL, $5)";
const SET_STATE: &str = "UPDATE projector_generations SET state = $1, heartbeat_at_ms = NULL \
     WHERE generation = $2 AND state = $3";
const ACTIVATE: &str = "UPDATE projector_generations SET state = 'active', activated_at_ms = $1, \
     heartbeat_at_ms = NULL WHERE generation = $2 AND state = $3";
const HEARTBEAT: &str = "UPDATE projector_generations SET heartbeat_at_ms = $1 \
     WHERE generation = $2 AND state = 'building'";
const GROUP_OFFSETS: &str = "SELECT topic, \"partition\", next_offset FROM eventline_consumer_offsets \
     WHERE group_id = $1";

#[derive(Debug, thiserror::Error)]
pub enum GenerationError {
    #[error(transparent)]
    Transition(#[from] TransitionError),
    #[error("the generations of the projector's read model cannot be read or changed")]
    Query(#[from] sqlx::Error),
    #[error("row {generation} of projector_generations is not valid: {problem}")]
    Corrupt { generation: i64, problem: String },
    #[error(
        "generation {generation} has not caught up with the active generation yet \
         ({} partitions behind)", behind.len()
    )]
    NotCaughtUp { generation: i64, behind: Vec<Behind> },
    #[error("generation {generation} changed under this command (it is no longer {expected}); nothing was changed")]
    Conflict { generation: i64, expected: GenerationState },
}

/// A build that has started: its generation (building, tables created), the one serving, and
/// abandoned builds that were cleaned up first.
#[derive(Debug, Clone)]
pub struct Started {
    pub building: Generation,
    pub serving: Generation,
    pub cleaned_up: Vec<i64>,
}

/// The generations of the projector's read model in one database.
#[derive(Debug, Clone)]
pub struct Generations {
    db: Database,
    configured_group: String,
}

impl Generations {
    /// `configured_group` is the projector's configured consumer group: generation 1's group,
    /// and the base of the later ones'.
    pub fn new(db: Database, configured_group: impl Into<String>) -> Self {
        Self { db, configured_group: configured_group.into() }
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    pub fn configured_group(&self) -> &str {
        &self.configured_group
    }

    /// Every generation, oldest first.
    pub async fn list(&self) -> Result<Vec<Generation>, GenerationError> {
        let mut conn = self.db.pool().acquire().await?;
        self.list_on(&mut conn).await
    }

    /// The generation served now.
    pub async fn active(&self) -> Result<Generation, GenerationError> {
        let sql = format!("SELECT {COLUMNS} FROM projector_generations WHERE state = 'active'");
        let row = sqlx::query(&sql).fetch_optional(self.db.pool()).await?;
        match row {
            Some(row) => self.read_row(&row),
            None => Err(TransitionError::NoActive.into()),
        }
    }

    /// Starts a build at `now_ms`: refuses while another one is alive (a heartbeat younger than
    /// `stale_after_ms`), retires dead ones with their tables, then records the new generation
    /// as building and creates its tables, all in one transaction.
    pub async fn begin_build(&self, now_ms: i64, stale_after_ms: i64) -> Result<Started, GenerationError> {
        let mut tx = self.db.pool().begin().await?;
        sqlx::query(LOCK).execute(&mut *tx).await?;
        let generations = self.list_on(&mut tx).await?;
        let plan = plan_build(&generations, now_ms, stale_after_ms)?;
        run_transition(&mut tx, &plan.stale, now_ms).await?;
        let number = plan.generation;
        let group = group_of(&self.configured_group, number);
        let tables = Tables::of(number);
        sqlx::query(INSERT_BUILDING)
            .bind(number)
            .bind(group.clone())
            .bind(tables.prefix().to_owned())
            .bind(now_ms)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        for statement in tables.create_statements() {
            sqlx::query(&statement).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        let serving =
            generations.iter().find(|g| g.generation == plan.serving).cloned().ok_or(TransitionError::NoActive)?;
        Ok(Started {
            building: Generation {
                generation: number,
                group_id: group,
                table_prefix: tables.prefix().to_owned(),
                state: GenerationState::Building,
                created_at_ms: now_ms,
                activated_at_ms: None,
                heartbeat_at_ms: Some(now_ms),
            },
            serving,
            cleaned_up: plan.stale.drop_tables_of,
        })
    }

    /// A building generation's builder is alive at `now_ms`; `false` when the generation is no
    /// longer building (another command cleaned it up).
    pub async fn heartbeat(&self, generation: i64, now_ms: i64) -> Result<bool, GenerationError> {
        let updated = sqlx::query(HEARTBEAT).bind(now_ms).bind(generation).execute(self.db.pool()).await?;
        Ok(updated.rows_affected() == 1)
    }

    /// Makes the building generation `building` active, in one transaction: only once its
    /// group's offsets on `topics` have reached the active group's on every partition
    /// ([`GenerationError::NotCaughtUp`] otherwise, and nothing changes), so the query API never
    /// goes back in time at the swap. The active one becomes previous; an older previous one is
    /// retired and its tables dropped. Returns the transition made.
    pub async fn swap(&self, building: i64, topics: &[String], now_ms: i64) -> Result<Transition, GenerationError> {
        let mut tx = self.db.pool().begin().await?;
        sqlx::query(LOCK).execute(&mut *tx).await?;
        let generations = self.list_on(&mut tx).await?;
        let transition = plan_swap(&generations, building)?;
        let group = |number: i64| generations.iter().find(|g| g.generation == number).map(|g| g.group_id.clone());
        let serving =
            generations.iter().find(|g| g.state == GenerationState::Active).ok_or(TransitionError::NoActive)?;
        let reference = group_offsets(&mut tx, &serving.group_id).await?;
        let candidate = match group(building) {
            Some(group) => group_offsets(&mut tx, &group).await?,
            None => Vec::new(),
        };
        let behind = behind(topics, &reference, &candidate);
        if !behind.is_empty() {
            tx.rollback().await?;
            return Err(GenerationError::NotCaughtUp { generation: building, behind });
        }
        run_transition(&mut tx, &transition, now_ms).await?;
        tx.commit().await?;
        Ok(transition)
    }

    /// Makes the previous generation active again and the active one previous.
    pub async fn rollback(&self, now_ms: i64) -> Result<Transition, GenerationError> {
        let mut tx = self.db.pool().begin().await?;
        sqlx::query(LOCK).execute(&mut *tx).await?;
        let generations = self.list_on(&mut tx).await?;
        let transition = plan_rollback(&generations)?;
        run_transition(&mut tx, &transition, now_ms).await?;
        tx.commit().await?;
        Ok(transition)
    }

    /// Gives up the build of `building`: retired, its tables dropped; nothing else changes.
    pub async fn abandon(&self, building: i64) -> Result<(), GenerationError> {
        let mut tx = self.db.pool().begin().await?;
        sqlx::query(LOCK).execute(&mut *tx).await?;
        let generations = self.list_on(&mut tx).await?;
        let transition = plan_abandon(&generations, building)?;
        run_transition(&mut tx, &transition, now_ms()).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_on(&self, conn: &mut AnyConnection) -> Result<Vec<Generation>, GenerationError> {
        let sql = format!("SELECT {COLUMNS} FROM projector_generations ORDER BY generation");
        let rows = sqlx::query(&sql).fetch_all(&mut *conn).await?;
        rows.iter().map(|row| self.read_row(row)).collect()
    }

    fn read_row(&self, row: &AnyRow) -> Result<Generation, GenerationError> {
        let generation: i64 = row.try_get("generation")?;
        let corrupt = |problem: String| GenerationError::Corrupt { generation, problem };
        let state: String = row.try_get("state")?;
        let state = GenerationState::parse(&state).ok_or_else(|| corrupt(format!("unknown state `{state}`")))?;
        let prefix: String = row.try_get("table_prefix")?;
        // Table names in SQL come from the generation number, never from stored text.
        if prefix != table_prefix(generation) {
            return Err(corrupt(format!("table_prefix `{prefix}` should be `{}`", table_prefix(generation))));
        }
        let group: Option<String> = row.try_get("group_id")?;
        Ok(Generation {
            generation,
            group_id: group.unwrap_or_else(|| group_of(&self.configured_group, generation)),
            table_prefix: prefix,
            state,
            created_at_ms: row.try_get("created_at_ms")?,
            activated_at_ms: row.try_get("activated_at_ms")?,
            heartbeat_at_ms: row.try_get("heartbeat_at_ms")?,
        })
    }
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// Makes `transition`'s changes in order and drops the tables it gives up, on `conn` (inside
/// the caller's transaction, after the lock).
async fn run_transition(conn: &mut AnyConnection, transition: &Transition, now_ms: i64) -> Result<(), GenerationError> {
    for change in &transition.changes {
        let updated = if change.to == GenerationState::Active {
            sqlx::query(ACTIVATE)
                .bind(now_ms)
                .bind(change.generation)
                .bind(change.from.as_str())
                .execute(&mut *conn)
                .await?
        } else {
            sqlx::query(SET_STATE)
                .bind(change.to.as_str())
                .bind(change.generation)
                .bind(change.from.as_str())
                .execute(&mut *conn)
                .await?
        };
        if updated.rows_affected() != 1 {
            return Err(GenerationError::Conflict { generation: change.generation, expected: change.from });
        }
    }
    for generation in &transition.drop_tables_of {
        for statement in Tables::of(*generation).drop_statements() {
            sqlx::query(&statement).execute(&mut *conn).await?;
        }
    }
    Ok(())
}

/// The stored next offsets of `group`, by partition.
async fn group_offsets(conn: &mut AnyConnection, group: &str) -> Result<Vec<(TopicPartition, i64)>, GenerationError> {
    let rows = sqlx::query(GROUP_OFFSETS).bind(group).fetch_all(&mut *conn).await?;
    let mut offsets = BTreeMap::new();
    for row in rows {
        let partition: i64 = row.try_get(1)?;
        let partition = i32::try_from(partition).unwrap_or(i32::MAX);
        offsets.insert((row.try_get::<String, _>(0)?, partition), row.try_get(2)?);
    }
    Ok(offsets.into_iter().collect())
}
