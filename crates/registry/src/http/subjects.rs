//! `/subjects/…`: register, look up, read, list and delete versions.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::extract::{ApiPath, Confluent, ConfluentJson, Params, RawSchema, RequestBody, WriteAccess};
use super::{ApiError, AppState};
use crate::domain::schema::SchemaError;
use crate::domain::{ParsedSchema, SchemaType, Subject, VersionSpec};
use crate::service::Deleted;
use crate::store::VersionRow;

/// The body of register, lookup and compatibility requests. Other fields (`metadata`,
/// `ruleSet`, …) are accepted and ignored, as clients send `Confluent-Accept-Unknown-Properties`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaRequest {
    pub schema: Option<String>,
    pub schema_type: Option<String>,
    #[serde(default)]
    pub references: Option<Vec<Value>>,
}

impl RequestBody for SchemaRequest {
    fn malformed(message: String) -> ApiError {
        ApiError::MalformedBody { error_code: 42201, message: format!("Invalid schema: {message}") }
    }
}

impl SchemaRequest {
    /// The schema this request carries: AVRO, without references, parsed.
    pub fn parse(&self) -> Result<ParsedSchema, ApiError> {
        SchemaType::parse(self.schema_type.as_deref())?;
        if self.references.as_ref().is_some_and(|r| !r.is_empty()) {
            return Err(SchemaError::References.into());
        }
        Ok(ParsedSchema::parse(self.schema.as_deref().unwrap_or_default())?)
    }
}

/// A version as Confluent answers it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionBody {
    pub subject: String,
    pub version: i64,
    pub id: i64,
    pub guid: String,
    pub schema_type: String,
    pub schema: String,
}

impl From<VersionRow> for VersionBody {
    fn from(row: VersionRow) -> Self {
        Self {
            subject: row.subject,
            version: row.version,
            id: row.schema.id,
            guid: row.schema.guid,
            schema_type: row.schema.schema_type,
            schema: row.schema.text,
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct SubjectVersionPath {
    subject: String,
    version: String,
}

impl SubjectVersionPath {
    fn parse(&self) -> Result<(Subject, VersionSpec), ApiError> {
        Ok((Subject::parse(&self.subject)?, VersionSpec::parse(&self.version)?))
    }
}

fn deleted_filter(params: &Params) -> Deleted {
    if params.flag("deleted_only") {
        Deleted::Only
    } else if params.flag("deleted") {
        Deleted::Include
    } else {
        Deleted::Exclude
    }
}

/// `GET /subjects` (`deleted`, `deleted_only`, `subjectPrefix`, `offset`, `limit`).
pub async fn list(State(state): State<AppState>, params: Params) -> Result<Confluent<Vec<String>>, ApiError> {
    let prefix = params.get("subjectPrefix").filter(|p| !p.is_empty() && *p != ":*:");
    let subjects = state.registry.subjects(deleted_filter(&params), prefix).await?;
    Ok(Confluent(params.page(subjects)))
}

/// `POST /subjects/{subject}/versions`: `{"id": N}` plus the version, guid and schema.
pub async fn register(
    _write: WriteAccess,
    State(state): State<AppState>,
    ApiPath(subject): ApiPath<String>,
    ConfluentJson(request): ConfluentJson<SchemaRequest>,
) -> Result<Confluent<VersionBody>, ApiError> {
    let subject = Subject::parse(&subject)?;
    let schema = request.parse()?;
    let registration = state.registry.register(&subject, &schema).await?;
    Ok(Confluent(registration.version.into()))
}

/// `POST /subjects/{subject}`: is this schema registered under the subject (`deleted`)?
pub async fn lookup(
    State(state): State<AppState>,
    ApiPath(subject): ApiPath<String>,
    params: Params,
    ConfluentJson(request): ConfluentJson<SchemaRequest>,
) -> Result<Confluent<VersionBody>, ApiError> {
    let subject = Subject::parse(&subject)?;
    let schema = request.parse()?;
    let found = state.registry.lookup(&subject, &schema, params.flag("deleted")).await?;
    Ok(Confluent(found.into()))
}

/// `DELETE /subjects/{subject}` (`permanent`): the versions deleted.
pub async fn delete(
    _write: WriteAccess,
    State(state): State<AppState>,
    ApiPath(subject): ApiPath<String>,
    params: Params,
) -> Result<Confluent<Vec<i64>>, ApiError> {
    let subject = Subject::parse(&subject)?;
    Ok(Confluent(state.registry.delete_subject(&subject, params.flag("permanent")).await?))
}

/// `GET /subjects/{subject}/versions` (`deleted`, `deleted_only`, `offset`, `limit`).
pub async fn versions(
    State(state): State<AppState>,
    ApiPath(subject): ApiPath<String>,
    params: Params,
) -> Result<Confluent<Vec<i64>>, ApiError> {
    let subject = Subject::parse(&subject)?;
    let versions = state.registry.versions(&subject, deleted_filter(&params)).await?;
    Ok(Confluent(params.page(versions)))
}

/// `GET /subjects/{subject}/versions/{version}` (`deleted`; `format` is ignored).
pub async fn version(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<SubjectVersionPath>,
    params: Params,
) -> Result<Confluent<VersionBody>, ApiError> {
    let (subject, spec) = path.parse()?;
    Ok(Confluent(state.registry.version(&subject, spec, params.flag("deleted")).await?.into()))
}

/// `GET /subjects/{subject}/versions/{version}/schema`: the schema text alone.
pub async fn raw_version(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<SubjectVersionPath>,
    params: Params,
) -> Result<RawSchema, ApiError> {
    let (subject, spec) = path.parse()?;
    Ok(RawSchema(state.registry.version(&subject, spec, params.flag("deleted")).await?.schema.text))
}

/// `GET /subjects/{subject}/versions/{version}/referencedby`: always empty (no references).
pub async fn referenced_by(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<SubjectVersionPath>,
) -> Result<Confluent<Vec<i64>>, ApiError> {
    let (subject, spec) = path.parse()?;
    state.registry.version(&subject, spec, false).await?;
    Ok(Confluent(Vec::new()))
}

/// `DELETE /subjects/{subject}/versions/{version}` (`permanent`): the version deleted.
pub async fn delete_version(
    _write: WriteAccess,
    State(state): State<AppState>,
    ApiPath(path): ApiPath<SubjectVersionPath>,
    params: Params,
) -> Result<Confluent<i64>, ApiError> {
    let (subject, spec) = path.parse()?;
    Ok(Confluent(state.registry.delete_version(&subject, spec, params.flag("permanent")).await?))
}
