//! The ledger in SQL (`eventline_effects`): recording effects, taking due ones under a lease,
//! and marking each done, due again or failed. Portable SQL on PostgreSQL and SQLite.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};
use uuid::Uuid;

use super::EffectKey;
use crate::db::{Database, DbError};

const INSERT: &str = "INSERT INTO eventline_effects \
     (service, effect_id, event_id, kind, recipient, payload, state, attempts, due_at_ms, created_at_ms) \
     VALUES ($1, $2, $3, $4, $5, $6, 'due', 0, $7, $7) \
     ON CONFLICT (service, effect_id) DO NOTHING";
const COLUMNS: &str =
    "effect_id, event_id, kind, recipient, payload, state, attempts, due_at_ms, created_at_ms, done_at_ms, last_error";
const TAKE: &str = "UPDATE eventline_effects SET due_at_ms = $1, attempts = attempts + 1 \
     WHERE service = $2 AND effect_id = $3 AND state = 'due' AND due_at_ms = $4";
// DONE, AGAIN and FAIL settle a try of a due effect; each binds (time, error, service, effect id).
const DONE: &str = "UPDATE eventline_effects SET state = 'done', done_at_ms = $1, last_error = $2 \
     WHERE service = $3 AND effect_id = $4 AND state = 'due'";
const AGAIN: &str = "UPDATE eventline_effects SET due_at_ms = $1, last_error = $2 \
     WHERE service = $3 AND effect_id = $4 AND state = 'due'";
const FAIL: &str = "UPDATE eventline_effects SET state = 'failed', done_at_ms = $1, last_error = $2 \
     WHERE service = $3 AND effect_id = $4 AND state = 'due'";
const REDRIVE: &str = "UPDATE eventline_effects SET state = 'due', attempts = 0, due_at_ms = $1, done_at_ms = NULL \
     WHERE service = $2 AND effect_id = $3 AND state = 'failed'";
const COUNTS: &str = "SELECT state, COUNT(*) FROM eventline_effects WHERE service = $1 GROUP BY state";

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("cannot create the effect ledger's table")]
    Migrate(#[source] DbError),
    #[error("the effect ledger cannot be read or written")]
    Query(#[from] sqlx::Error),
    #[error("the payload of effect {effect_id} cannot be written or read as JSON")]
    Payload {
        effect_id: Uuid,
        #[source]
        source: serde_json::Error,
    },
    #[error("row {effect_id} of eventline_effects is not valid: {problem}")]
    Corrupt { effect_id: String, problem: String },
}

/// Where an effect is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EffectState {
    /// Recorded and not done yet: tried when `due_at_ms` has passed.
    Due,
    /// A try succeeded; never tried again.
    Done,
    /// Every try of its schedule failed; `last_error` says why. An operator may redrive it.
    Failed,
}

impl EffectState {
    pub fn as_str(self) -> &'static str {
        match self {
            EffectState::Due => "due",
            EffectState::Done => "done",
            EffectState::Failed => "failed",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "due" => Some(EffectState::Due),
            "done" => Some(EffectState::Done),
            "failed" => Some(EffectState::Failed),
            _ => None,
        }
    }
}

/// One effect as the ledger has it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Effect {
    pub effect_id: Uuid,
    pub key: EffectKey,
    /// What to perform, fixed when the effect was recorded (the rendered message, the body).
    pub payload: serde_json::Value,
    pub state: EffectState,
    /// Tries so far (a try in progress counts).
    pub attempts: u32,
    pub due_at_ms: i64,
    pub created_at_ms: i64,
    pub done_at_ms: Option<i64>,
    pub last_error: Option<String>,
}

/// Whether [`EffectLedger::record`] recorded the effect or found it there already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    New,
    AlreadyRecorded,
}

/// The effects of one service (its name scopes them) in its database.
#[derive(Debug, Clone)]
pub struct EffectLedger {
    db: Database,
    service: Arc<str>,
}

impl EffectLedger {
    pub fn new(db: Database, service: &str) -> Self {
        Self { db, service: Arc::from(service) }
    }

    /// Creates the table if the database does not have it (with the consumer runtime's tables).
    pub async fn migrate(&self) -> Result<(), LedgerError> {
        self.db.migrate(&crate::kafka::consumer::offsets::migrations()).await.map_err(LedgerError::Migrate)
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Records the effect `key` as due now with `payload`, on `conn`: call it in the transaction
    /// that saves the batch's offsets. An effect recorded before (any copy of the same event) is
    /// left as it is.
    pub async fn record(
        &self,
        conn: &mut AnyConnection,
        key: &EffectKey,
        payload: &impl Serialize,
    ) -> Result<Recorded, LedgerError> {
        let effect_id = key.effect_id();
        let payload = serde_json::to_string(payload).map_err(|source| LedgerError::Payload { effect_id, source })?;
        let inserted = sqlx::query(INSERT)
            .bind(&*self.service)
            .bind(effect_id.to_string())
            .bind(key.event_id.to_string())
            .bind(&key.kind)
            .bind(&key.recipient)
            .bind(payload)
            .bind(now_ms())
            .execute(&mut *conn)
            .await?;
        Ok(if inserted.rows_affected() == 1 { Recorded::New } else { Recorded::AlreadyRecorded })
    }

    /// [`record`](Self::record) in a transaction of its own (the `kafka` offset mode).
    pub async fn record_now(&self, key: &EffectKey, payload: &impl Serialize) -> Result<Recorded, LedgerError> {
        let mut conn = self.db.pool().acquire().await?;
        self.record(&mut conn, key, payload).await
    }

    /// Takes up to `limit` effects due at `now_ms`, oldest first: each one's next try moves to
    /// `now_ms + lease` and its attempts go up by one, in one conditional update per effect, so
    /// an effect is taken by one worker only. A worker that dies while it holds one leaves it to
    /// be taken again once the lease ends.
    pub async fn take_due(&self, now_ms: i64, lease: Duration, limit: u32) -> Result<Vec<Effect>, LedgerError> {
        let select = format!(
            "SELECT {COLUMNS} FROM eventline_effects WHERE service = $1 AND state = 'due' AND due_at_ms <= $2 \
             ORDER BY due_at_ms LIMIT $3"
        );
        let rows = sqlx::query(&select)
            .bind(&*self.service)
            .bind(now_ms)
            .bind(i64::from(limit))
            .fetch_all(self.db.pool())
            .await?;
        let leased_until = now_ms.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
        let mut taken = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut effect = effect_of(row)?;
            let won = sqlx::query(TAKE)
                .bind(leased_until)
                .bind(&*self.service)
                .bind(effect.effect_id.to_string())
                .bind(effect.due_at_ms)
                .execute(self.db.pool())
                .await?;
            if won.rows_affected() == 1 {
                effect.attempts += 1;
                effect.due_at_ms = leased_until;
                taken.push(effect);
            }
        }
        Ok(taken)
    }

    /// A try of `effect_id` succeeded.
    pub async fn done(&self, effect_id: Uuid) -> Result<(), LedgerError> {
        self.settle(DONE, effect_id, now_ms(), None).await
    }

    /// A try failed; try again at `due_at_ms`.
    pub async fn again(&self, effect_id: Uuid, due_at_ms: i64, error: &str) -> Result<(), LedgerError> {
        self.settle(AGAIN, effect_id, due_at_ms, Some(error)).await
    }

    /// No more tries: failed for good, with `error`.
    pub async fn fail(&self, effect_id: Uuid, error: &str) -> Result<(), LedgerError> {
        self.settle(FAIL, effect_id, now_ms(), Some(error)).await
    }

    async fn settle(&self, sql: &str, effect_id: Uuid, at_ms: i64, error: Option<&str>) -> Result<(), LedgerError> {
        sqlx::query(sql)
            .bind(at_ms)
            .bind(error)
            .bind(&*self.service)
            .bind(effect_id.to_string())
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// A failed effect is due again now, with a fresh schedule; `false` if it was not failed.
    pub async fn redrive(&self, effect_id: Uuid) -> Result<bool, LedgerError> {
        let changed = sqlx::query(REDRIVE)
            .bind(now_ms())
            .bind(&*self.service)
            .bind(effect_id.to_string())
            .execute(self.db.pool())
            .await?;
        Ok(changed.rows_affected() == 1)
    }

    /// The effect `key`, if it was recorded.
    pub async fn get(&self, key: &EffectKey) -> Result<Option<Effect>, LedgerError> {
        let select = format!("SELECT {COLUMNS} FROM eventline_effects WHERE service = $1 AND effect_id = $2");
        let row = sqlx::query(&select)
            .bind(&*self.service)
            .bind(key.effect_id().to_string())
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref().map(effect_of).transpose()
    }

    /// Effects in `state`, most recent first, at most `limit`.
    pub async fn list(&self, state: EffectState, limit: u32) -> Result<Vec<Effect>, LedgerError> {
        let select = format!(
            "SELECT {COLUMNS} FROM eventline_effects WHERE service = $1 AND state = $2 \
             ORDER BY created_at_ms DESC LIMIT $3"
        );
        let rows = sqlx::query(&select)
            .bind(&*self.service)
            .bind(state.as_str())
            .bind(i64::from(limit))
            .fetch_all(self.db.pool())
            .await?;
        rows.iter().map(effect_of).collect()
    }

    /// How many effects are in each state.
    pub async fn counts(&self) -> Result<BTreeMap<EffectState, i64>, LedgerError> {
        let rows = sqlx::query(COUNTS).bind(&*self.service).fetch_all(self.db.pool()).await?;
        let mut counts = BTreeMap::new();
        for row in rows {
            let state: String = row.try_get(0)?;
            let state = EffectState::parse(&state).ok_or_else(|| LedgerError::Corrupt {
                effect_id: "(count)".into(),
                problem: format!("state {state}"),
            })?;
            counts.insert(state, row.try_get::<i64, _>(1)?);
        }
        Ok(counts)
    }
}

fn effect_of(row: &AnyRow) -> Result<Effect, LedgerError> {
    let id: String = row.try_get("effect_id")?;
    let corrupt = |problem: String| LedgerError::Corrupt { effect_id: id.clone(), problem };
    let effect_id = Uuid::parse_str(&id).map_err(|e| corrupt(format!("effect_id: {e}")))?;
    let event_id: String = row.try_get("event_id")?;
    let event_id = Uuid::parse_str(&event_id).map_err(|e| corrupt(format!("event_id: {e}")))?;
    let state: String = row.try_get("state")?;
    let state = EffectState::parse(&state).ok_or_else(|| corrupt(format!("unknown state {state}")))?;
    let payload: String = row.try_get("payload")?;
    let payload = serde_json::from_str(&payload).map_err(|source| LedgerError::Payload { effect_id, source })?;
    let attempts: i64 = row.try_get("attempts")?;
    Ok(Effect {
        effect_id,
        key: EffectKey { event_id, kind: row.try_get("kind")?, recipient: row.try_get("recipient")? },
        payload,
        state,
        attempts: u32::try_from(attempts).map_err(|_| corrupt(format!("attempts {attempts}")))?,
        due_at_ms: row.try_get("due_at_ms")?,
        created_at_ms: row.try_get("created_at_ms")?,
        done_at_ms: row.try_get("done_at_ms")?,
        last_error: row.try_get("last_error")?,
    })
}

/// Unix milliseconds now.
pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
