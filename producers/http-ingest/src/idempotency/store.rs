//! The idempotency records in the shared database (PostgreSQL or SQLite, portable SQL, times
//! as epoch milliseconds). One row per `(scope, key)`: claimed (no `status` yet) while its
//! request runs, then completed with the outcome, and deleted once it expires.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use eventline_common::db::{Database, DbError, Migrations};

/// The ingest service's migrations (versions 2000-2999 of the shared database).
pub fn migrations() -> Migrations {
    Migrations::new(sqlx::migrate!("./migrations/postgres"), sqlx::migrate!("./migrations/sqlite"))
}

/// Rows per statement, well under both databases' limits on bound parameters.
const CHUNK: usize = 400;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot apply the ingest service's migrations")]
    Migrate(#[source] DbError),
    #[error("idempotency query failed")]
    Query(#[from] sqlx::Error),
}

/// What claiming a key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is ours: go ahead, then [`complete`](IdempotencyStore::complete) or
    /// [`release`](IdempotencyStore::release) it.
    Claimed,
    /// An earlier request with this key finished; its outcome.
    Completed { same_fingerprint: bool, status: u16, response: String },
    /// Another request holds the key right now.
    InFlight,
}

/// The outcome to remember for a claimed key.
#[derive(Debug, Clone)]
pub struct Completion {
    pub key: String,
    pub status: u16,
    pub response: String,
}

#[derive(Clone, Debug)]
pub struct IdempotencyStore {
    db: Database,
    window: Duration,
    stale_after: Duration,
}

type Row = (String, String, String, Option<i64>, Option<String>, i64, i64);

impl IdempotencyStore {
    /// `window`: how long outcomes are remembered; `stale_after`: when an unfinished claim is
    /// considered abandoned (its process died) and may be taken over.
    pub fn new(db: Database, window: Duration, stale_after: Duration) -> Self {
        Self { db, window, stale_after }
    }

    pub fn stale_after(&self) -> Duration {
        self.stale_after
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.db.migrate(&migrations()).await.map_err(StoreError::Migrate)
    }

    /// Claims every `(key, fingerprint)` for `claim_id`; one answer per key, in order.
    pub async fn claim(
        &self,
        scope: &str,
        claim_id: &str,
        keys: &[(String, String)],
    ) -> Result<Vec<Claim>, StoreError> {
        self.claim_at(scope, claim_id, keys, now_ms()).await
    }

    pub async fn claim_at(
        &self,
        scope: &str,
        claim_id: &str,
        keys: &[(String, String)],
        now: i64,
    ) -> Result<Vec<Claim>, StoreError> {
        let mut claimed = self.insert(scope, claim_id, keys, now).await?;
        let others: Vec<&String> = keys.iter().map(|(k, _)| k).filter(|k| !claimed.contains(*k)).collect();
        let mut found = self.select(scope, &others).await?;
        // Expired outcomes and abandoned claims are dead: delete them and claim once more.
        let stale_before = now - millis(self.stale_after);
        let mut retry = Vec::new();
        for (key, fingerprint) in keys.iter().filter(|(k, _)| !claimed.contains(k)) {
            match found.get(key) {
                Some(row) if row.6 >= now && (row.3.is_some() || row.5 >= stale_before) => {}
                Some(row) => {
                    sqlx::query("DELETE FROM ingest_idempotency WHERE scope = $1 AND idem_key = $2 AND claim_id = $3")
                        .bind(scope)
                        .bind(key)
                        .bind(&row.2)
                        .execute(self.db.pool())
                        .await?;
                    retry.push((key.clone(), fingerprint.clone()));
                }
                None => retry.push((key.clone(), fingerprint.clone())),
            }
        }
        if !retry.is_empty() {
            claimed.extend(self.insert(scope, claim_id, &retry, now).await?);
            let missing: Vec<&String> = retry.iter().map(|(k, _)| k).filter(|k| !claimed.contains(*k)).collect();
            found.extend(self.select(scope, &missing).await?);
        }
        Ok(keys
            .iter()
            .map(|(key, fingerprint)| {
                if claimed.contains(key) {
                    return Claim::Claimed;
                }
                match found.get(key) {
                    Some((_, stored, _, Some(status), Some(response), _, _)) => Claim::Completed {
                        same_fingerprint: stored == fingerprint,
                        status: u16::try_from(*status).unwrap_or(500),
                        response: response.clone(),
                    },
                    _ => Claim::InFlight,
                }
            })
            .collect())
    }

    /// Records the outcomes of keys claimed by `claim_id`, remembered for the window from now.
    pub async fn complete(&self, scope: &str, claim_id: &str, done: &[Completion]) -> Result<(), StoreError> {
        if done.is_empty() {
            return Ok(());
        }
        let expires = now_ms() + millis(self.window);
        let mut tx = self.db.pool().begin().await?;
        for completion in done {
            sqlx::query(
                "UPDATE ingest_idempotency SET status = $1, response = $2, expires_at_ms = $3 \
                 WHERE scope = $4 AND idem_key = $5 AND claim_id = $6",
            )
            .bind(i64::from(completion.status))
            .bind(&completion.response)
            .bind(expires)
            .bind(scope)
            .bind(&completion.key)
            .bind(claim_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Gives keys claimed by `claim_id` up (nothing was published for them).
    pub async fn release(&self, scope: &str, claim_id: &str, keys: &[String]) -> Result<(), StoreError> {
        for chunk in keys.chunks(CHUNK) {
            let sql = format!(
                "DELETE FROM ingest_idempotency WHERE scope = $1 AND claim_id = $2 AND idem_key IN ({})",
                placeholders(3, chunk.len())
            );
            let mut query = sqlx::query(&sql).bind(scope).bind(claim_id);
            for key in chunk {
                query = query.bind(key);
            }
            query.execute(self.db.pool()).await?;
        }
        Ok(())
    }

    /// Deletes every record that expired before `now`; returns how many.
    pub async fn purge_expired_at(&self, now: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM ingest_idempotency WHERE expires_at_ms < $1")
            .bind(now)
            .execute(self.db.pool())
            .await?;
        Ok(done.rows_affected())
    }

    pub async fn purge_expired(&self) -> Result<u64, StoreError> {
        self.purge_expired_at(now_ms()).await
    }

    /// Inserts the keys nobody holds; returns those it inserted.
    async fn insert(
        &self,
        scope: &str,
        claim_id: &str,
        keys: &[(String, String)],
        now: i64,
    ) -> Result<HashSet<String>, StoreError> {
        let mut claimed = HashSet::new();
        for chunk in keys.chunks(CHUNK) {
            let values: Vec<String> =
                (0..chunk.len()).map(|i| format!("($1, ${}, ${}, $2, $3, $4)", 5 + 2 * i, 6 + 2 * i)).collect();
            let sql = format!(
                "INSERT INTO ingest_idempotency (scope, idem_key, fingerprint, claim_id, claimed_at_ms, expires_at_ms) \
                 VALUES {} ON CONFLICT (scope, idem_key) DO NOTHING RETURNING idem_key",
                values.join(", ")
            );
            let mut query = sqlx::query_scalar::<_, String>(&sql)
                .bind(scope)
                .bind(claim_id)
                .bind(now)
                .bind(now + millis(self.window));
            for (key, fingerprint) in chunk {
                query = query.bind(key).bind(fingerprint);
            }
            claimed.extend(query.fetch_all(self.db.pool()).await?);
        }
        Ok(claimed)
    }

    async fn select(&self, scope: &str, keys: &[&String]) -> Result<HashMap<String, Row>, StoreError> {
        let mut found = HashMap::new();
        for chunk in keys.chunks(CHUNK) {
            let sql = format!(
                "SELECT idem_key, fingerprint, claim_id, status, response, claimed_at_ms, expires_at_ms \
                 FROM ingest_idempotency WHERE scope = $1 AND idem_key IN ({})",
                placeholders(2, chunk.len())
            );
            let mut query = sqlx::query_as::<_, Row>(&sql).bind(scope);
            for key in chunk {
                query = query.bind(*key);
            }
            found.extend(query.fetch_all(self.db.pool()).await?.into_iter().map(|row| (row.0.clone(), row)));
        }
        Ok(found)
    }
}

fn placeholders(first: usize, count: usize) -> String {
    (first..first + count).map(|n| format!("${n}")).collect::<Vec<_>>().join(", ")
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX / 2)
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(millis).unwrap_or_default()
}
