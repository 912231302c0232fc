//! The generations in SQL (`eventline_generations`, one service's rows): reading them, and each
//! transition in one transaction that first takes the service's write lock, so no batch of any
//! of its generations is applied halfway through it, and a batch that was waiting for the lock
//! sees the new states.

use std::collections::BTreeMap;

use chrono::Utc;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};

use super::GenerationTables;
use super::{
    behind, group_of, plan_abandon, plan_build, plan_rollback, plan_swap, table_prefix, Behind, Generation,
    GenerationState, Transition, TransitionError, FIRST,
};
use crate::db::{Backend, Database};
use crate::kafka::consumer::{OffsetStore, OffsetStoreError, TopicPartition};
use crate::service::RunTarget;

const COLUMNS: &str = "generation, group_id, table_prefix, state, created_at_ms, activated_at_ms, heartbeat_at_ms";
const INSERT: &str = "INSERT INTO eventline_generations \
     (service, generation, group_id, table_prefix, state, created_at_ms, activated_at_ms, heartbeat_at_ms) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
const SET_STATE: &str = "UPDATE eventline_generations SET state = $1, heartbeat_at_ms = NULL \
     WHERE service = $2 AND generation = $3 AND state = $4";
const ACTIVATE: &str = "UPDATE eventline_generations SET state = 'active', activated_at_ms = $1, \
     heartbeat_at_ms = NULL WHERE service = $2 AND generation = $3 AND state = $4";
const HEARTBEAT: &str = "UPDATE eventline_generations SET heartbeat_at_ms = $1 \
     WHERE service = $2 AND generation = $3 AND state = 'building'";
const STATE_OF: &str = "SELECT state FROM eventline_generations WHERE service = $1 AND generation = $2";
const HAS_ROWS: &str = "SELECT COUNT(*) FROM eventline_generations WHERE service = $1";
const GROUP_OFFSETS: &str = "SELECT topic, \"partition\", next_offset FROM eventline_consumer_offsets \
     WHERE group_id = $1";

#[derive(Debug, thiserror::Error)]
pub enum GenerationError {
    #[error(transparent)]
    Transition(#[from] TransitionError),
    #[error("the generations cannot be read or changed")]
    Query(#[from] sqlx::Error),
    #[error("cannot create the generations table")]
    Migrate(#[from] OffsetStoreError),
    #[error("row {generation} of {service}'s generations is not valid: {problem}")]
    Corrupt { service: &'static str, generation: i64, problem: String },
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

/// The generations of one service's tables in one database.
#[derive(Clone)]
pub struct Generations {
    db: Database,
    service: &'static str,
    configured_group: String,
    tables: &'static dyn GenerationTables,
}

impl std::fmt::Debug for Generations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generations")
            .field("service", &self.service)
            .field("configured_group", &self.configured_group)
            .finish_non_exhaustive()
    }
}

impl Generations {
    /// The generations of `service`, whose tables are `tables`. `configured_group` is its
    /// configured consumer group: generation 1's group, and the base of the later ones'.
    pub fn new(
        db: Database,
        service: &'static str,
        configured_group: impl Into<String>,
        tables: &'static dyn GenerationTables,
    ) -> Self {
        Self { db, service, configured_group: configured_group.into(), tables }
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    pub fn service(&self) -> &'static str {
        self.service
    }

    pub fn configured_group(&self) -> &str {
        &self.configured_group
    }

    pub fn tables(&self) -> &'static dyn GenerationTables {
        self.tables
    }

    /// The table prefix of `generation` of this service.
    pub fn table_prefix(&self, generation: i64) -> String {
        table_prefix(self.service, generation)
    }

    /// See [`ensure`].
    pub async fn ensure(&self) -> Result<(), GenerationError> {
        ensure(&self.db, self.service, self.tables).await
    }

    /// Every generation, oldest first.
    pub async fn list(&self) -> Result<Vec<Generation>, GenerationError> {
        let mut conn = self.db.pool().acquire().await?;
        self.list_on(&mut conn).await
    }

    /// The generation served now.
    pub async fn active(&self) -> Result<Generation, GenerationError> {
        let sql = format!("SELECT {COLUMNS} FROM eventline_generations WHERE service = $1 AND state = 'active'");
        let row = sqlx::query(&sql).bind(self.service).fetch_optional(self.db.pool()).await?;
        match row {
            Some(row) => self.read_row(&row),
            None => Err(TransitionError::NoActive.into()),
        }
    }

    /// What the running service follows: the active generation and its group (a rebuildable
    /// service's [`ConsumerService::current_run`](crate::service::ConsumerService::current_run)).
    pub async fn current_run(&self) -> Result<RunTarget, GenerationError> {
        let active = self.active().await?;
        Ok(RunTarget { group_id: active.group_id, generation: active.generation })
    }

    /// Starts a build at `now_ms`: refuses while another one is alive (a heartbeat younger than
    /// `stale_after_ms`), retires dead ones with their tables, then records the new generation
    /// as building and creates its tables, all in one transaction.
    pub async fn begin_build(&self, now_ms: i64, stale_after_ms: i64) -> Result<Started, GenerationError> {
        let mut tx = self.db.pool().begin().await?;
        sqlx::query(self.tables.write_lock()).execute(&mut *tx).await?;
        let generations = self.list_on(&mut tx).await?;
        let plan = plan_build(&generations, now_ms, stale_after_ms)?;
        self.run_transition(&mut tx, &plan.stale, now_ms).await?;
        let number = plan.generation;
        let building = Generation {
            generation: number,
            group_id: group_of(&self.configured_group, number),
            table_prefix: self.table_prefix(number),
            state: GenerationState::Building,
            created_at_ms: now_ms,
            activated_at_ms: None,
            heartbeat_at_ms: Some(now_ms),
        };
        sqlx::query(INSERT)
            .bind(self.service)
            .bind(number)
            .bind(building.group_id.clone())
            .bind(building.table_prefix.clone())
            .bind(GenerationState::Building.as_str())
            .bind(now_ms)
            .bind(None::<i64>)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        for statement in self.tables.create_statements(&building.table_prefix) {
            sqlx::query(&statement).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        let serving =
            generations.iter().find(|g| g.generation == plan.serving).cloned().ok_or(TransitionError::NoActive)?;
        Ok(Started { building, serving, cleaned_up: plan.stale.drop_tables_of })
    }

    /// A building generation's builder is alive at `now_ms`; `false` when the generation is no
    /// longer building (another command cleaned it up).
    pub async fn heartbeat(&self, generation: i64, now_ms: i64) -> Result<bool, GenerationError> {
        let updated =
            sqlx::query(HEARTBEAT).bind(now_ms).bind(self.service).bind(generation).execute(self.db.pool()).await?;
        Ok(updated.rows_affected() == 1)
    }

    /// Makes the building generation `building` active, in one transaction: only once its
    /// group's offsets on `topics` have reached the active group's on every partition
    /// ([`GenerationError::NotCaughtUp`] otherwise, and nothing changes), so what the service
    /// answers never goes back in time at the swap. The active one becomes previous; an older
    /// previous one is retired and its tables dropped. Returns the transition made.
    pub async fn swap(&self, building: i64, topics: &[String], now_ms: i64) -> Result<Transition, GenerationError> {
        let mut tx = self.db.pool().begin().await?;
        sqlx::query(self.tables.write_lock()).execute(&mut *tx).await?;
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
        self.run_transition(&mut tx, &transition, now_ms).await?;
        tx.commit().await?;
        Ok(transition)
    }

    /// Makes the previous generation active again and the active one previous.
    pub async fn rollback(&self, now_ms: i64) -> Result<Transition, GenerationError> {
        let mut tx = self.db.pool().begin().await?;
        sqlx::query(self.tables.write_lock()).execute(&mut *tx).await?;
        let generations = self.list_on(&mut tx).await?;
        let transition = plan_rollback(&generations)?;
        self.run_transition(&mut tx, &transition, now_ms).await?;
        tx.commit().await?;
        Ok(transition)
    }

    /// Gives up the build of `building`: retired, its tables dropped; nothing else changes.
    pub async fn abandon(&self, building: i64) -> Result<(), GenerationError> {
        let mut tx = self.db.pool().begin().await?;
        sqlx::query(self.tables.write_lock()).execute(&mut *tx).await?;
        let generations = self.list_on(&mut tx).await?;
        let transition = plan_abandon(&generations, building)?;
        self.run_transition(&mut tx, &transition, now_ms()).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_on(&self, conn: &mut AnyConnection) -> Result<Vec<Generation>, GenerationError> {
        let sql = format!("SELECT {COLUMNS} FROM eventline_generations WHERE service = $1 ORDER BY generation");
        let rows = sqlx::query(&sql).bind(self.service).fetch_all(&mut *conn).await?;
        rows.iter().map(|row| self.read_row(row)).collect()
    }

    fn read_row(&self, row: &AnyRow) -> Result<Generation, GenerationError> {
        let generation: i64 = row.try_get("generation")?;
        let corrupt = |problem: String| GenerationError::Corrupt { service: self.service, generation, problem };
        let state: String = row.try_get("state")?;
        let state = GenerationState::parse(&state).ok_or_else(|| corrupt(format!("unknown state `{state}`")))?;
        let prefix: String = row.try_get("table_prefix")?;
        // Table names in SQL come from the service's name and the generation number, never
        // from stored text.
        let expected = self.table_prefix(generation);
        if prefix != expected {
            return Err(corrupt(format!("table_prefix `{prefix}` should be `{expected}`")));
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

    /// Makes `transition`'s changes in order and drops the tables it gives up, on `conn`
    /// (inside the caller's transaction, after the lock).
    async fn run_transition(
        &self,
        conn: &mut AnyConnection,
        transition: &Transition,
        now_ms: i64,
    ) -> Result<(), GenerationError> {
        for change in &transition.changes {
            let query = if change.to == GenerationState::Active {
                sqlx::query(ACTIVATE).bind(now_ms)
            } else {
                sqlx::query(SET_STATE).bind(change.to.as_str())
            };
            let updated =
                query.bind(self.service).bind(change.generation).bind(change.from.as_str()).execute(&mut *conn).await?;
            if updated.rows_affected() != 1 {
                return Err(GenerationError::Conflict { generation: change.generation, expected: change.from });
            }
        }
        for generation in &transition.drop_tables_of {
            for statement in self.tables.drop_statements(&self.table_prefix(*generation)) {
                sqlx::query(&statement).execute(&mut *conn).await?;
            }
        }
        Ok(())
    }
}

/// Creates `eventline_generations` where missing and, the first time for `service`, records
/// its generations: copied from its table of the time before ([`GenerationTables::legacy_table`],
/// the projector's `projector_generations`) when that exists, else generation 1 (the original
/// tables) active. Done in code at first use rather than in a migration because the common
/// migrations and the service's run in either order (and a service's own migration could not
/// know that `eventline_generations` exists yet). Under the service's write lock, so two
/// processes starting at once record them once; the service's tables (its lock row) must exist.
/// The service's `build` calls it once its own tables are migrated; the legacy table is read
/// once and then never again.
pub async fn ensure(
    db: &Database,
    service: &'static str,
    tables: &'static dyn GenerationTables,
) -> Result<(), GenerationError> {
    OffsetStore::new(db.clone()).migrate().await?;
    let mut tx = db.pool().begin().await?;
    sqlx::query(tables.write_lock()).execute(&mut *tx).await?;
    let rows: i64 = sqlx::query(HAS_ROWS).bind(service).fetch_one(&mut *tx).await?.try_get(0)?;
    if rows > 0 {
        tx.rollback().await?;
        return Ok(());
    }
    let copied = match tables.legacy_table() {
        Some(table) if table_exists(&mut tx, db.backend(), table).await? => {
            let copy =
                format!("INSERT INTO eventline_generations (service, {COLUMNS}) SELECT $1, {COLUMNS} FROM {table}");
            sqlx::query(&copy).bind(service).execute(&mut *tx).await?.rows_affected()
        }
        _ => 0,
    };
    if copied == 0 {
        let now = now_ms();
        sqlx::query(INSERT)
            .bind(service)
            .bind(FIRST)
            .bind(None::<String>)
            .bind(table_prefix(service, FIRST))
            .bind(GenerationState::Active.as_str())
            .bind(now)
            .bind(now)
            .bind(None::<i64>)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The state of `service`'s `generation` (`None`: no such generation), read on `conn`: a
/// handler reads it in its batch's transaction, after the service's write lock, and writes
/// only when it [is writable](GenerationState::is_writable).
pub async fn state_of(
    conn: &mut AnyConnection,
    service: &str,
    generation: i64,
) -> Result<Option<GenerationState>, sqlx::Error> {
    let state: Option<String> = sqlx::query(STATE_OF)
        .bind(service)
        .bind(generation)
        .fetch_optional(&mut *conn)
        .await?
        .map(|row| row.try_get(0))
        .transpose()?;
    Ok(state.as_deref().and_then(GenerationState::parse))
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

async fn table_exists(conn: &mut AnyConnection, backend: Backend, table: &str) -> Result<bool, sqlx::Error> {
    let sql = match backend {
        Backend::Sqlite => "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = $1",
        Backend::Postgres => {
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1"
        }
    };
    let count: i64 = sqlx::query(sql).bind(table).fetch_one(&mut *conn).await?.try_get(0)?;
    Ok(count > 0)
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
