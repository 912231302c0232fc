//! SQL over the shared database: PostgreSQL or SQLite through `AnyPool`, portable statements
//! with `$n` placeholders, times as epoch milliseconds.
//!
//! Concurrency: schema ids come from a unique fingerprint (insert-or-ignore, then read), and a
//! new version is inserted with the number the caller computed; the `(subject, version)` primary
//! key turns a concurrent registration into [`StoreError::Conflict`], which the caller retries.

use std::time::{SystemTime, UNIX_EPOCH};

use eventline_common::db::{Backend, Database, Migrations};
use sqlx::error::ErrorKind;
use sqlx::{Any, Transaction};

use crate::domain::{CompatibilityLevel, ParsedSchema, Subject};

/// The registry's migrations (versions 1000-1999 of the shared database).
pub fn migrations() -> Migrations {
    Migrations::new(sqlx::migrate!("./migrations/postgres"), sqlx::migrate!("./migrations/sqlite"))
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("a concurrent write changed the same rows")]
    Conflict,
    #[error("database query failed")]
    Query(#[source] sqlx::Error),
    #[error("stored compatibility level `{0}` is not valid")]
    BadLevel(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        if is_contention(&error) {
            StoreError::Conflict
        } else {
            StoreError::Query(error)
        }
    }
}

/// Unique violations, PostgreSQL serialization failures and deadlocks, SQLite busy/locked.
fn is_contention(error: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = error else { return false };
    if db.kind() == ErrorKind::UniqueViolation {
        return true;
    }
    matches!(db.code().as_deref(), Some("40001" | "40P01" | "5" | "6" | "517" | "261" | "262"))
}

/// A stored schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaRow {
    pub id: i64,
    pub guid: String,
    pub schema_type: String,
    pub text: String,
}

/// A version of a subject with its schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRow {
    pub subject: String,
    pub version: i64,
    pub deleted: bool,
    pub schema: SchemaRow,
}

type VersionTuple = (String, i64, Option<i64>, i64, String, String, String);

const VERSION_SELECT: &str =
    "SELECT v.subject, v.version, v.deleted_at_ms, s.id, s.guid, s.schema_type, s.schema_text \
     FROM registry_versions v JOIN registry_schemas s ON s.id = v.schema_id";

fn version_row((subject, version, deleted_at, id, guid, schema_type, text): VersionTuple) -> VersionRow {
    VersionRow { subject, version, deleted: deleted_at.is_some(), schema: SchemaRow { id, guid, schema_type, text } }
}

/// A subject and whether it still has live (not soft-deleted) versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectRow {
    pub subject: String,
    pub live: bool,
}

/// Where a compatibility level applies.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    Global,
    Subject(&'a Subject),
}

impl Scope<'_> {
    /// The `registry_config.scope` key: empty for global (never a valid subject name).
    fn key(&self) -> &str {
        match self {
            Scope::Global => "",
            Scope::Subject(subject) => subject.as_str(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Store {
    db: Database,
}

impl Store {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    pub async fn migrate(&self) -> Result<(), eventline_common::db::DbError> {
        self.db.migrate(&migrations()).await
    }

    pub async fn is_ready(&self) -> bool {
        self.db.is_ready().await
    }

    /// A write transaction; on SQLite it takes the write lock up front (`BEGIN IMMEDIATE`) so a
    /// second writer waits on `busy_timeout` instead of failing on a stale snapshot.
    async fn begin(&self) -> Result<Transaction<'static, Any>, StoreError> {
        let tx = match self.db.backend() {
            Backend::Sqlite => self.db.pool().begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.db.pool().begin().await?,
        };
        Ok(tx)
    }

    /// The versions of `subject`, oldest first; soft-deleted ones only with `include_deleted`.
    pub async fn versions(&self, subject: &Subject, include_deleted: bool) -> Result<Vec<VersionRow>, StoreError> {
        let sql = format!(
            "{VERSION_SELECT} WHERE v.subject = $1 {} ORDER BY v.version",
            if include_deleted { "" } else { "AND v.deleted_at_ms IS NULL" }
        );
        let rows: Vec<VersionTuple> = sqlx::query_as(&sql).bind(subject.as_str()).fetch_all(self.db.pool()).await?;
        Ok(rows.into_iter().map(version_row).collect())
    }

    /// One version of `subject`, deleted or not.
    pub async fn version(&self, subject: &Subject, version: i64) -> Result<Option<VersionRow>, StoreError> {
        let sql = format!("{VERSION_SELECT} WHERE v.subject = $1 AND v.version = $2");
        let row: Option<VersionTuple> =
            sqlx::query_as(&sql).bind(subject.as_str()).bind(version).fetch_optional(self.db.pool()).await?;
        Ok(row.map(version_row))
    }

    /// A schema by id, if some version (live or soft-deleted) still uses it.
    pub async fn schema_by_id(&self, id: i64) -> Result<Option<SchemaRow>, StoreError> {
        self.schema_where("s.id = $1", SchemaKey::Id(id)).await
    }

    /// A schema by guid, if some version (live or soft-deleted) still uses it.
    pub async fn schema_by_guid(&self, guid: &str) -> Result<Option<SchemaRow>, StoreError> {
        self.schema_where("s.guid = $1", SchemaKey::Guid(guid)).await
    }

    async fn schema_where(&self, condition: &str, key: SchemaKey<'_>) -> Result<Option<SchemaRow>, StoreError> {
        let sql = format!(
            "SELECT s.id, s.guid, s.schema_type, s.schema_text FROM registry_schemas s WHERE {condition} \
             AND EXISTS (SELECT 1 FROM registry_versions v WHERE v.schema_id = s.id)"
        );
        let query = sqlx::query_as::<_, (i64, String, String, String)>(&sql);
        let query = match key {
            SchemaKey::Id(id) => query.bind(id),
            SchemaKey::Guid(guid) => query.bind(guid.to_owned()),
        };
        let row = query.fetch_optional(self.db.pool()).await?;
        Ok(row.map(|(id, guid, schema_type, text)| SchemaRow { id, guid, schema_type, text }))
    }

    /// Every `(subject, version, deleted)` that uses schema `id`, ordered.
    pub async fn usages(&self, id: i64) -> Result<Vec<(String, i64, bool)>, StoreError> {
        let rows: Vec<(String, i64, Option<i64>)> = sqlx::query_as(
            "SELECT subject, version, deleted_at_ms FROM registry_versions WHERE schema_id = $1 \
             ORDER BY subject, version",
        )
        .bind(id)
        .fetch_all(self.db.pool())
        .await?;
        let mut usages: Vec<_> = rows.into_iter().map(|(s, v, d)| (s, v, d.is_some())).collect();
        usages.sort();
        Ok(usages)
    }

    /// Every subject that has versions, sorted by name (bytewise, the same on both backends).
    pub async fn subjects(&self) -> Result<Vec<SubjectRow>, StoreError> {
        let rows: Vec<(String, i64, i64)> =
            sqlx::query_as("SELECT subject, COUNT(*), COUNT(deleted_at_ms) FROM registry_versions GROUP BY subject")
                .fetch_all(self.db.pool())
                .await?;
        let mut subjects: Vec<SubjectRow> =
            rows.into_iter().map(|(subject, all, deleted)| SubjectRow { subject, live: all > deleted }).collect();
        subjects.sort_by(|a, b| a.subject.cmp(&b.subject));
        Ok(subjects)
    }

    /// Stores `schema` (or finds it, by fingerprint) and adds it to `subject` as `version`, in
    /// one transaction. Returns the stored schema; [`StoreError::Conflict`] if `version` was taken.
    pub async fn insert_version(
        &self,
        subject: &Subject,
        version: i64,
        schema: &ParsedSchema,
    ) -> Result<SchemaRow, StoreError> {
        let now = now_millis();
        let fingerprint = schema.fingerprint();
        let mut tx = self.begin().await?;
        let find = "SELECT id, guid, schema_type, schema_text FROM registry_schemas WHERE fingerprint = $1";
        let existing: Option<(i64, String, String, String)> =
            sqlx::query_as(find).bind(fingerprint.as_str()).fetch_optional(&mut *tx).await?;
        let (id, guid, schema_type, text) = match existing {
            Some(row) => row,
            None => {
                sqlx::query(
                    "INSERT INTO registry_schemas (fingerprint, guid, schema_type, schema_text, created_at_ms) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (fingerprint) DO NOTHING",
                )
                .bind(fingerprint.as_str())
                .bind(fingerprint.guid())
                .bind(schema.schema_type().as_str())
                .bind(schema.text())
                .bind(now)
                .execute(&mut *tx)
                .await?;
                sqlx::query_as(find).bind(fingerprint.as_str()).fetch_one(&mut *tx).await?
            }
        };
        sqlx::query(
            "INSERT INTO registry_versions (subject, version, schema_id, created_at_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(subject.as_str())
        .bind(version)
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(SchemaRow { id, guid, schema_type, text })
    }

    /// Soft-deletes the live versions of `subject` (all, or just `version`); returns how many.
    pub async fn soft_delete(&self, subject: &Subject, version: Option<i64>) -> Result<u64, StoreError> {
        let sql = format!(
            "UPDATE registry_versions SET deleted_at_ms = $1 WHERE subject = $2 AND deleted_at_ms IS NULL {}",
            if version.is_some() { "AND version = $3" } else { "" }
        );
        let mut query = sqlx::query(&sql).bind(now_millis()).bind(subject.as_str());
        if let Some(version) = version {
            query = query.bind(version);
        }
        Ok(query.execute(self.db.pool()).await?.rows_affected())
    }

    /// Removes soft-deleted versions of `subject` for good (all, or just `version`); returns how
    /// many. Schemas keep their ids, so registering one again gives it the same id.
    pub async fn hard_delete(&self, subject: &Subject, version: Option<i64>) -> Result<u64, StoreError> {
        let sql = format!(
            "DELETE FROM registry_versions WHERE subject = $1 AND deleted_at_ms IS NOT NULL {}",
            if version.is_some() { "AND version = $2" } else { "" }
        );
        let mut query = sqlx::query(&sql).bind(subject.as_str());
        if let Some(version) = version {
            query = query.bind(version);
        }
        Ok(query.execute(self.db.pool()).await?.rows_affected())
    }

    /// The level configured for `scope`, if any.
    pub async fn level(&self, scope: Scope<'_>) -> Result<Option<CompatibilityLevel>, StoreError> {
        let row: Option<(String,)> = sqlx::query_as("SELECT compatibility FROM registry_config WHERE scope = $1")
            .bind(scope.key())
            .fetch_optional(self.db.pool())
            .await?;
        row.map(|(text,)| parse_level(text)).transpose()
    }

    pub async fn set_level(&self, scope: Scope<'_>, level: CompatibilityLevel) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO registry_config (scope, compatibility, updated_at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (scope) DO UPDATE SET compatibility = excluded.compatibility, \
             updated_at_ms = excluded.updated_at_ms",
        )
        .bind(scope.key())
        .bind(level.as_str())
        .bind(now_millis())
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// Removes the level of `scope`, returning what it was.
    pub async fn delete_level(&self, scope: Scope<'_>) -> Result<Option<CompatibilityLevel>, StoreError> {
        let row: Option<(String,)> =
            sqlx::query_as("DELETE FROM registry_config WHERE scope = $1 RETURNING compatibility")
                .bind(scope.key())
                .fetch_optional(self.db.pool())
                .await?;
        row.map(|(text,)| parse_level(text)).transpose()
    }
}

enum SchemaKey<'a> {
    Id(i64),
    Guid(&'a str),
}

fn parse_level(text: String) -> Result<CompatibilityLevel, StoreError> {
    text.parse().map_err(|_| StoreError::BadLevel(text))
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}
