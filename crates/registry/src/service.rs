//! The registry's use cases: domain rules over the store, no HTTP. Each operation reads what it
//! needs, decides with `domain`, then writes; a registration that loses a race is retried.

use std::time::Duration;

use crate::domain::{check, CompatibilityLevel, Incompatibility, ParsedSchema, Subject, VersionSpec};
use crate::metrics::RegistryMetrics;
use crate::store::{SchemaRow, Scope, Store, StoreError, SubjectRow, VersionRow};

/// How often a registration is retried when another writer took the version it wanted.
const MAX_ATTEMPTS: u32 = 64;
/// The longest pause between two attempts.
const MAX_BACKOFF: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("Subject '{0}' not found.")]
    SubjectNotFound(String),
    #[error("Version {version} not found.")]
    VersionNotFound { version: String },
    #[error("Schema {0} not found")]
    SchemaNotFound(String),
    #[error("Schema not found")]
    SchemaNotInSubject,
    #[error("Subject '{0}' was soft deleted. Set permanent=true to delete permanently")]
    SubjectSoftDeleted(String),
    #[error("Subject '{0}' was not deleted first before being permanently deleted")]
    SubjectNotSoftDeleted(String),
    #[error("Subject '{subject}' Version {version} was soft deleted. Set permanent=true to delete permanently")]
    VersionSoftDeleted { subject: String, version: i64 },
    #[error("Subject '{subject}' Version {version} was not deleted first before being permanently deleted")]
    VersionNotSoftDeleted { subject: String, version: i64 },
    #[error("Subject '{0}' does not have subject-level compatibility configured")]
    NoSubjectLevel(String),
    #[error("Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: [{details}]")]
    Incompatible { subject: String, details: String },
    #[error("stored schema {id} no longer parses: {message}")]
    StoredSchemaInvalid { id: i64, message: String },
    #[error("registration for subject `{0}` still conflicted after {MAX_ATTEMPTS} attempts")]
    Contention(String),
    #[error("registry storage failed")]
    Store(#[from] StoreError),
}

/// Which versions a listing includes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    Exclude,
    Include,
    Only,
}

impl Deleted {
    fn keeps(self, deleted: bool) -> bool {
        match self {
            Deleted::Exclude => !deleted,
            Deleted::Include => true,
            Deleted::Only => deleted,
        }
    }
}

/// The answer to a registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub version: VersionRow,
    pub created: bool,
}

/// What a compatibility test compares with.
#[derive(Debug, Clone, Copy)]
pub enum Against {
    Version(VersionSpec),
    /// The versions the subject's level would use for a registration.
    Registration,
}

#[derive(Clone, Debug)]
pub struct Registry {
    store: Store,
    metrics: RegistryMetrics,
}

impl Registry {
    pub fn new(store: Store, metrics: RegistryMetrics) -> Self {
        Self { store, metrics }
    }

    pub async fn is_ready(&self) -> bool {
        self.store.is_ready().await
    }

    /// Registers `schema` under `subject`: the existing version if the subject already has it,
    /// else a new version after the compatibility check.
    pub async fn register(&self, subject: &Subject, schema: &ParsedSchema) -> Result<Registration, RegistryError> {
        for attempt in 1..=MAX_ATTEMPTS {
            // One read gives both the history to check and the next version number, so a
            // concurrent registration after this read makes the insert below conflict.
            let all = self.store.versions(subject, true).await?;
            let next = all.last().map_or(0, |v| v.version) + 1;
            let live: Vec<VersionRow> = all.into_iter().filter(|v| !v.deleted).collect();
            if let Some(existing) = find_schema(&live, schema) {
                let (id, version) = (existing.schema.id, existing.version);
                self.metrics.schema_already_registered(subject.as_str(), id, version);
                return Ok(Registration { version: existing.clone(), created: false });
            }
            let level = self.effective_level(subject).await?;
            let problems = check_against(level, schema, &live)?;
            if !problems.is_empty() {
                self.metrics.schema_incompatible(subject.as_str(), problems.len());
                return Err(incompatible(subject, &problems));
            }
            match self.store.insert_version(subject, next, schema).await {
                Ok(stored) => {
                    self.metrics.schema_registered(subject.as_str(), stored.id, next);
                    let version =
                        VersionRow { subject: subject.to_string(), version: next, deleted: false, schema: stored };
                    return Ok(Registration { version, created: true });
                }
                Err(StoreError::Conflict) => {
                    tracing::debug!(subject = %subject, attempt, "registration conflicted, retrying");
                    tokio::time::sleep((Duration::from_millis(2) * attempt).min(MAX_BACKOFF)).await;
                }
                Err(other) => return Err(other.into()),
            }
        }
        Err(RegistryError::Contention(subject.to_string()))
    }

    /// The version of `subject` holding `schema` (the newest if several do).
    pub async fn lookup(
        &self,
        subject: &Subject,
        schema: &ParsedSchema,
        deleted: bool,
    ) -> Result<VersionRow, RegistryError> {
        let versions = self.store.versions(subject, deleted).await?;
        if versions.is_empty() {
            return Err(RegistryError::SubjectNotFound(subject.to_string()));
        }
        find_schema(&versions, schema).cloned().ok_or(RegistryError::SchemaNotInSubject)
    }

    pub async fn version(
        &self,
        subject: &Subject,
        spec: VersionSpec,
        deleted: bool,
    ) -> Result<VersionRow, RegistryError> {
        let versions = self.store.versions(subject, deleted).await?;
        pick(subject, &versions, spec).cloned()
    }

    pub async fn versions(&self, subject: &Subject, deleted: Deleted) -> Result<Vec<i64>, RegistryError> {
        let all = self.store.versions(subject, deleted != Deleted::Exclude).await?;
        let kept: Vec<i64> = all.iter().filter(|v| deleted.keeps(v.deleted)).map(|v| v.version).collect();
        if all.is_empty() || (kept.is_empty() && deleted != Deleted::Only) {
            return Err(RegistryError::SubjectNotFound(subject.to_string()));
        }
        Ok(kept)
    }

    /// Subject names; a subject counts as deleted when all its versions are.
    pub async fn subjects(&self, deleted: Deleted, prefix: Option<&str>) -> Result<Vec<String>, RegistryError> {
        let rows: Vec<SubjectRow> = self.store.subjects().await?;
        Ok(rows
            .into_iter()
            .filter(|row| deleted.keeps(!row.live))
            .filter(|row| prefix.is_none_or(|p| row.subject.starts_with(p)))
            .map(|row| row.subject)
            .collect())
    }

    pub async fn schema_by_id(&self, id: i64) -> Result<SchemaRow, RegistryError> {
        self.store.schema_by_id(id).await?.ok_or_else(|| RegistryError::SchemaNotFound(id.to_string()))
    }

    pub async fn schema_by_guid(&self, guid: &str) -> Result<SchemaRow, RegistryError> {
        self.store.schema_by_guid(guid).await?.ok_or_else(|| RegistryError::SchemaNotFound(guid.to_owned()))
    }

    /// The `(subject, version)` pairs using schema `id`.
    pub async fn usages(&self, id: i64, deleted: bool) -> Result<Vec<(String, i64)>, RegistryError> {
        let usages = self.store.usages(id).await?;
        if usages.is_empty() {
            return Err(RegistryError::SchemaNotFound(id.to_string()));
        }
        Ok(usages.into_iter().filter(|(_, _, d)| deleted || !d).map(|(s, v, _)| (s, v)).collect())
    }

    /// Soft-deletes every live version, or (`permanent`) removes a soft-deleted subject.
    pub async fn delete_subject(&self, subject: &Subject, permanent: bool) -> Result<Vec<i64>, RegistryError> {
        let all = self.store.versions(subject, true).await?;
        if all.is_empty() {
            return Err(RegistryError::SubjectNotFound(subject.to_string()));
        }
        let live: Vec<i64> = all.iter().filter(|v| !v.deleted).map(|v| v.version).collect();
        if permanent {
            if !live.is_empty() {
                return Err(RegistryError::SubjectNotSoftDeleted(subject.to_string()));
            }
            self.store.hard_delete(subject, None).await?;
            self.store.delete_level(Scope::Subject(subject)).await?;
            tracing::info!(subject = %subject, "subject deleted permanently");
            return Ok(all.iter().map(|v| v.version).collect());
        }
        if live.is_empty() {
            return Err(RegistryError::SubjectSoftDeleted(subject.to_string()));
        }
        self.store.soft_delete(subject, None).await?;
        tracing::info!(subject = %subject, versions = live.len(), "subject soft-deleted");
        Ok(live)
    }

    /// Soft-deletes one live version, or (`permanent`) removes a soft-deleted one.
    pub async fn delete_version(
        &self,
        subject: &Subject,
        spec: VersionSpec,
        permanent: bool,
    ) -> Result<i64, RegistryError> {
        let all = self.store.versions(subject, true).await?;
        let candidates: Vec<VersionRow> = all.iter().filter(|v| permanent || !v.deleted).cloned().collect();
        if candidates.is_empty() {
            return Err(RegistryError::SubjectNotFound(subject.to_string()));
        }
        let target = match spec {
            VersionSpec::Latest => pick(subject, &candidates, spec)?,
            VersionSpec::Number(_) => pick(subject, &all, spec)?,
        };
        let version = target.version;
        match (permanent, target.deleted) {
            (false, true) => Err(RegistryError::VersionSoftDeleted { subject: subject.to_string(), version }),
            (true, false) => Err(RegistryError::VersionNotSoftDeleted { subject: subject.to_string(), version }),
            (false, false) => {
                self.store.soft_delete(subject, Some(version)).await?;
                tracing::info!(subject = %subject, version, "version soft-deleted");
                Ok(version)
            }
            (true, true) => {
                self.store.hard_delete(subject, Some(version)).await?;
                tracing::info!(subject = %subject, version, "version deleted permanently");
                Ok(version)
            }
        }
    }

    /// Tests `schema` against one version or against what a registration would check.
    pub async fn test(
        &self,
        subject: &Subject,
        schema: &ParsedSchema,
        against: Against,
    ) -> Result<Vec<Incompatibility>, RegistryError> {
        let level = self.effective_level(subject).await?;
        let live = self.store.versions(subject, false).await?;
        match against {
            Against::Registration | Against::Version(VersionSpec::Latest) if live.is_empty() => Ok(Vec::new()),
            Against::Registration => check_against(level, schema, &live),
            Against::Version(spec) => {
                let target = pick(subject, &live, spec)?;
                check_against(level, schema, std::slice::from_ref(target))
            }
        }
    }

    pub async fn global_level(&self) -> Result<CompatibilityLevel, RegistryError> {
        Ok(self.store.level(Scope::Global).await?.unwrap_or_default())
    }

    /// The subject's own level; with `default_to_global`, the global level when it has none.
    pub async fn subject_level(
        &self,
        subject: &Subject,
        default_to_global: bool,
    ) -> Result<CompatibilityLevel, RegistryError> {
        match self.store.level(Scope::Subject(subject)).await? {
            Some(level) => Ok(level),
            None if default_to_global => self.global_level().await,
            None => Err(RegistryError::NoSubjectLevel(subject.to_string())),
        }
    }

    pub async fn effective_level(&self, subject: &Subject) -> Result<CompatibilityLevel, RegistryError> {
        self.subject_level(subject, true).await
    }

    pub async fn set_level(&self, scope: Scope<'_>, level: CompatibilityLevel) -> Result<(), RegistryError> {
        self.store.set_level(scope, level).await?;
        tracing::info!(scope = ?scope_name(scope), %level, "compatibility level set");
        Ok(())
    }

    /// Removes a subject's level (40408 if it had none) or resets the global one; returns the
    /// level that was in force.
    pub async fn delete_level(&self, scope: Scope<'_>) -> Result<CompatibilityLevel, RegistryError> {
        let old = self.store.delete_level(scope).await?;
        match (scope, old) {
            (_, Some(level)) => Ok(level),
            (Scope::Global, None) => Ok(CompatibilityLevel::default()),
            (Scope::Subject(subject), None) => Err(RegistryError::NoSubjectLevel(subject.to_string())),
        }
    }
}

fn scope_name(scope: Scope<'_>) -> String {
    match scope {
        Scope::Global => "global".to_owned(),
        Scope::Subject(subject) => subject.to_string(),
    }
}

fn find_schema<'a>(versions: &'a [VersionRow], schema: &ParsedSchema) -> Option<&'a VersionRow> {
    let guid = schema.fingerprint().guid();
    versions.iter().rev().find(|v| v.schema.guid == guid)
}

fn pick<'a>(subject: &Subject, versions: &'a [VersionRow], spec: VersionSpec) -> Result<&'a VersionRow, RegistryError> {
    if versions.is_empty() {
        return Err(RegistryError::SubjectNotFound(subject.to_string()));
    }
    let found = match spec {
        VersionSpec::Latest => versions.last(),
        VersionSpec::Number(n) => versions.iter().find(|v| v.version == n),
    };
    found.ok_or_else(|| RegistryError::VersionNotFound {
        version: match spec {
            VersionSpec::Latest => "latest".to_owned(),
            VersionSpec::Number(n) => n.to_string(),
        },
    })
}

/// Runs the domain check against stored versions (parsing only the ones the level needs).
fn check_against(
    level: CompatibilityLevel,
    schema: &ParsedSchema,
    history: &[VersionRow],
) -> Result<Vec<Incompatibility>, RegistryError> {
    let needed = if level.is_transitive() { history } else { &history[history.len().saturating_sub(1)..] };
    let mut parsed = Vec::with_capacity(needed.len());
    for row in needed {
        let avro = apache_avro::Schema::parse_str(&row.schema.text)
            .map_err(|e| RegistryError::StoredSchemaInvalid { id: row.schema.id, message: e.to_string() })?;
        parsed.push((row.version, avro));
    }
    let refs: Vec<(i64, &apache_avro::Schema)> = parsed.iter().map(|(v, s)| (*v, s)).collect();
    Ok(check(level, schema.avro(), &refs))
}

fn incompatible(subject: &Subject, problems: &[Incompatibility]) -> RegistryError {
    let details = problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
    RegistryError::Incompatible { subject: subject.to_string(), details }
}
