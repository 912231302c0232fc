//! `/schemas/…` and the small read-only endpoints clients probe (`/`, `/mode`, `/contexts`).

use axum::extract::State;
use serde::Serialize;
use serde_json::{json, Value};

use super::extract::{ApiPath, Confluent, Params, RawSchema};
use super::{ApiError, AppState};
use crate::domain::schema::AVRO;
use crate::service::RegistryError;
use crate::store::SchemaRow;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaBody {
    pub schema: String,
    pub schema_type: String,
    pub guid: String,
}

impl From<SchemaRow> for SchemaBody {
    fn from(row: SchemaRow) -> Self {
        Self { schema: row.text, schema_type: row.schema_type, guid: row.guid }
    }
}

#[derive(Debug, Serialize)]
pub struct SubjectVersionPair {
    pub subject: String,
    pub version: i64,
}

/// Ids in paths: anything that is not a number is simply not found (as in Confluent).
fn schema_id(text: &str) -> Result<i64, ApiError> {
    text.parse::<i64>().map_err(|_| RegistryError::SchemaNotFound(text.to_owned()).into())
}

pub async fn root() -> Confluent<Value> {
    Confluent(json!({}))
}

pub async fn types() -> Confluent<[&'static str; 1]> {
    Confluent([AVRO])
}

pub async fn mode() -> Confluent<Value> {
    Confluent(json!({"mode": "READWRITE"}))
}

pub async fn contexts() -> Confluent<[&'static str; 1]> {
    Confluent(["."])
}

/// `GET /schemas/ids/{id}`; `subject`, `format`, `fetchMaxId` and `reference_format` are ignored.
pub async fn by_id(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Confluent<SchemaBody>, ApiError> {
    let row = state.registry.schema_by_id(schema_id(&id)?).await?;
    Ok(Confluent(row.into()))
}

pub async fn raw_by_id(State(state): State<AppState>, ApiPath(id): ApiPath<String>) -> Result<RawSchema, ApiError> {
    Ok(RawSchema(state.registry.schema_by_id(schema_id(&id)?).await?.text))
}

pub async fn by_guid(
    State(state): State<AppState>,
    ApiPath(guid): ApiPath<String>,
) -> Result<Confluent<SchemaBody>, ApiError> {
    Ok(Confluent(state.registry.schema_by_guid(&guid).await?.into()))
}

/// `GET /schemas/ids/{id}/subjects` (`deleted`, `subject`, `offset`, `limit`).
pub async fn subjects_of(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    params: Params,
) -> Result<Confluent<Vec<String>>, ApiError> {
    let mut subjects: Vec<String> = usages(&state, &id, &params).await?.into_iter().map(|p| p.subject).collect();
    subjects.dedup();
    Ok(Confluent(params.page(subjects)))
}

/// `GET /schemas/ids/{id}/versions` (`deleted`, `subject`, `offset`, `limit`).
pub async fn versions_of(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
    params: Params,
) -> Result<Confluent<Vec<SubjectVersionPair>>, ApiError> {
    Ok(Confluent(params.page(usages(&state, &id, &params).await?)))
}

async fn usages(state: &AppState, id: &str, params: &Params) -> Result<Vec<SubjectVersionPair>, ApiError> {
    let pairs = state.registry.usages(schema_id(id)?, params.flag("deleted")).await?;
    let only = params.get("subject");
    Ok(pairs
        .into_iter()
        .filter(|(subject, _)| only.is_none_or(|s| s == subject))
        .map(|(subject, version)| SubjectVersionPair { subject, version })
        .collect())
}
