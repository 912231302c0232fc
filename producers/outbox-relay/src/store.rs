//! SQL over the upstream's PostgreSQL: the outbox table, claims, and what happened to each row.
//!
//! One batch is one transaction ([`BatchTx`]): read a window of the oldest pending rows, claim
//! aggregates with transaction-scoped advisory locks, lock and read the claimed aggregates' pending
//! rows (`FOR UPDATE`), publish (outside this module), record the outcome, commit. A crash before
//! the commit rolls everything back, locks included, so the rows are simply pending again.

use std::str::FromStr;
use std::time::Duration;

use chrono::DateTime;
use eventline_common::config::Secret;
use eventline_common::db::redact_url;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, Row as _, Transaction};

use crate::ddl::outbox_ddl;
use crate::domain::{ChannelName, Mark, OutboxRow, TableName};

/// How the relay's connections show up in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "eventline-outbox-relay";
/// A batch transaction, the listener and the lag / readiness queries.
const MAX_CONNECTIONS: u32 = 4;
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
const PENDING: &str = "published_at IS NULL AND rejected_at IS NULL";
/// What the relay reads of a row (`occurred_at` as whole seconds and microseconds, exactly).
const ROW_COLUMNS: &str = "id, event_id::text AS event_id, event_type, aggregate_id, payload::text AS payload, \
     source, subject, traceparent, correlation_id, attempts, \
     extract(epoch FROM date_trunc('second', occurred_at))::bigint AS seconds, \
     (extract(microseconds FROM occurred_at)::bigint % 1000000) AS micros";
/// What it writes.
const WRITTEN_COLUMNS: &str = "published_at, rejected_at, last_error, kafka_topic, kafka_partition, kafka_offset";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot connect to the outbox database at {url}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("the outbox table {table} does not exist: apply producers/outbox-relay/sql/outbox.sql in the upstream database, or set outbox_relay.create_table = true")]
    MissingTable { table: String },
    #[error("the outbox table {table} lacks the columns the relay reads (compare it with producers/outbox-relay/sql/outbox.sql)")]
    WrongColumns {
        table: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot create the outbox table {table}")]
    Create {
        table: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("outbox row {id}: occurred_at is out of range")]
    BadTime { id: i64 },
    #[error("outbox query failed")]
    Query(#[from] sqlx::Error),
}

/// The statements, rendered once for the configured table.
#[derive(Debug)]
struct Statements {
    window: String,
    claim: &'static str,
    rows: String,
    columns: String,
    published: String,
    rejected: String,
    retry: String,
    lag: String,
}

impl Statements {
    fn new(table: &TableName) -> Self {
        Self {
            window: format!("SELECT aggregate_id FROM {table} WHERE {PENDING} ORDER BY id LIMIT $1"),
            claim: "SELECT a FROM unnest($1::text[]) WITH ORDINALITY AS c(a, n) \
                    WHERE pg_try_advisory_xact_lock(hashtextextended(a, $2)) ORDER BY n",
            rows: format!(
                "SELECT {ROW_COLUMNS} FROM {table} WHERE {PENDING} AND aggregate_id = ANY($1) \
                 ORDER BY id LIMIT $2 FOR UPDATE"
            ),
            columns: format!("SELECT {ROW_COLUMNS}, {WRITTEN_COLUMNS} FROM {table} LIMIT 0"),
            published: format!(
                "UPDATE {table} AS o SET published_at = clock_timestamp(), attempts = o.attempts + 1, last_error = NULL, \
                 kafka_topic = m.topic, kafka_partition = m.part, kafka_offset = m.off \
                 FROM unnest($1::bigint[], $2::text[], $3::int[], $4::bigint[]) AS m(id, topic, part, off) WHERE o.id = m.id"
            ),
            rejected: format!(
                "UPDATE {table} AS o SET rejected_at = clock_timestamp(), attempts = o.attempts + 1, last_error = m.error \
                 FROM unnest($1::bigint[], $2::text[]) AS m(id, error) WHERE o.id = m.id"
            ),
            retry: format!(
                "UPDATE {table} AS o SET attempts = o.attempts + 1, last_error = m.error \
                 FROM unnest($1::bigint[], $2::text[]) AS m(id, error) WHERE o.id = m.id"
            ),
            lag: format!("SELECT count(*) FROM {table} WHERE {PENDING}"),
        }
    }
}

/// The outbox table of one upstream database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
    table: TableName,
    /// The table's OID: the seed of the per-aggregate lock keys, so two outbox tables in one
    /// database never share a lock, however their names are spelled in config.
    lock_seed: i64,
    sql: std::sync::Arc<Statements>,
}

impl Store {
    /// Connects, creates the table when asked, and checks that it has the relay's columns.
    pub async fn open(
        url: &Secret,
        table: &TableName,
        channel: &ChannelName,
        create: bool,
    ) -> Result<Self, StoreError> {
        let connect = |source| StoreError::Connect { url: redact_url(url.expose()), source };
        let options = PgConnectOptions::from_str(url.expose()).map_err(connect)?.application_name(APPLICATION_NAME);
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(connect)?;
        if create {
            create_table(&pool, table, channel).await?;
        }
        let oid: Option<i64> =
            sqlx::query_scalar("SELECT to_regclass($1)::oid::bigint").bind(table.to_string()).fetch_one(&pool).await?;
        let lock_seed = oid.ok_or_else(|| StoreError::MissingTable { table: table.to_string() })?;
        let sql = Statements::new(table);
        sqlx::query(&sql.columns)
            .execute(&pool)
            .await
            .map_err(|source| StoreError::WrongColumns { table: table.to_string(), source })?;
        Ok(Self { pool, table: table.clone(), lock_seed, sql: std::sync::Arc::new(sql) })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn table(&self) -> &TableName {
        &self.table
    }

    /// Starts one batch.
    pub async fn begin(&self) -> Result<BatchTx<'_>, StoreError> {
        Ok(BatchTx { tx: self.pool.begin().await?, store: self })
    }

    /// Rows neither published nor rejected.
    pub async fn pending(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(&self.sql.lag).fetch_one(&self.pool).await?)
    }

    /// `true` when the database answers.
    pub async fn is_ready(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Applies the DDL in a transaction holding an advisory lock, so relays starting together do
/// not race on `CREATE … IF NOT EXISTS`.
async fn create_table(pool: &PgPool, table: &TableName, channel: &ChannelName) -> Result<(), StoreError> {
    let failed = |source| StoreError::Create { table: table.to_string(), source };
    let mut tx = pool.begin().await.map_err(failed)?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(format!("eventline-outbox-relay ddl {table}"))
        .execute(&mut *tx)
        .await
        .map_err(failed)?;
    sqlx::raw_sql(&outbox_ddl(table, channel)).execute(&mut *tx).await.map_err(failed)?;
    tx.commit().await.map_err(failed)
}

/// One batch's transaction.
pub struct BatchTx<'a> {
    tx: Transaction<'static, Postgres>,
    store: &'a Store,
}

impl BatchTx<'_> {
    /// The aggregate ids of the `limit` oldest pending rows, in id order (no locks taken).
    pub async fn window(&mut self, limit: i64) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(&self.store.sql.window).bind(limit).fetch_all(&mut *self.tx).await?)
    }

    /// Claims those of `aggregates` no other relay holds; the claims last until commit or rollback.
    pub async fn claim(&mut self, aggregates: &[String]) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(self.store.sql.claim)
            .bind(aggregates)
            .bind(self.store.lock_seed)
            .fetch_all(&mut *self.tx)
            .await?)
    }

    /// Locks and reads the oldest `limit` pending rows of the claimed aggregates, in id order.
    pub async fn rows(&mut self, claimed: &[String], limit: i64) -> Result<Vec<OutboxRow>, StoreError> {
        let found = sqlx::query(&self.store.sql.rows).bind(claimed).bind(limit).fetch_all(&mut *self.tx).await?;
        found
            .iter()
            .map(|row| {
                let id: i64 = row.try_get("id")?;
                let seconds: i64 = row.try_get("seconds")?;
                let micros: i64 = row.try_get("micros")?;
                let occurred_at = u32::try_from(micros * 1000)
                    .ok()
                    .and_then(|nanos| DateTime::from_timestamp(seconds, nanos))
                    .ok_or(StoreError::BadTime { id })?;
                Ok(OutboxRow {
                    id,
                    event_id: row.try_get("event_id")?,
                    event_type: row.try_get("event_type")?,
                    aggregate_id: row.try_get("aggregate_id")?,
                    payload: row.try_get("payload")?,
                    source: row.try_get("source")?,
                    subject: row.try_get("subject")?,
                    traceparent: row.try_get("traceparent")?,
                    correlation_id: row.try_get("correlation_id")?,
                    occurred_at,
                    attempts: row.try_get("attempts")?,
                })
            })
            .collect()
    }

    /// Records each row's mark (held-back rows are left as they are).
    pub async fn record(&mut self, rows: &[OutboxRow], marks: &[Mark]) -> Result<(), StoreError> {
        let (mut published, mut topics, mut partitions, mut offsets) = (vec![], vec![], vec![], vec![]);
        let (mut rejected, mut reasons, mut retried, mut errors) = (vec![], vec![], vec![], vec![]);
        for (row, mark) in rows.iter().zip(marks) {
            match mark {
                Mark::Published(position) => {
                    published.push(row.id);
                    topics.push(position.topic.clone());
                    partitions.push(position.partition);
                    offsets.push(position.offset);
                }
                Mark::Rejected(reason) => {
                    rejected.push(row.id);
                    reasons.push(reason.clone());
                }
                Mark::Retry(error) => {
                    retried.push(row.id);
                    errors.push(error.clone());
                }
                Mark::HeldBack => {}
            }
        }
        let sql = &self.store.sql;
        if !published.is_empty() {
            sqlx::query(&sql.published)
                .bind(published)
                .bind(topics)
                .bind(partitions)
                .bind(offsets)
                .execute(&mut *self.tx)
                .await?;
        }
        if !rejected.is_empty() {
            sqlx::query(&sql.rejected).bind(rejected).bind(reasons).execute(&mut *self.tx).await?;
        }
        if !retried.is_empty() {
            sqlx::query(&sql.retry).bind(retried).bind(errors).execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    pub async fn commit(self) -> Result<(), StoreError> {
        Ok(self.tx.commit().await?)
    }
}
