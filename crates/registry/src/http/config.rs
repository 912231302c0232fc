//! `/config` and `/config/{subject}`: compatibility levels.

use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::extract::{ApiPath, Confluent, ConfluentJson, Params, RequestBody, WriteAccess};
use super::{ApiError, AppState};
use crate::domain::{CompatibilityLevel, Subject};
use crate::store::Scope;

/// `PUT` body: `{"compatibility": "FULL"}` (`compatibilityLevel` is accepted too).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigRequest {
    compatibility: Option<String>,
    compatibility_level: Option<String>,
}

impl RequestBody for ConfigRequest {
    fn malformed(message: String) -> ApiError {
        ApiError::MalformedBody { error_code: 42203, message: format!("Invalid compatibility level: {message}") }
    }
}

impl ConfigRequest {
    fn level(&self) -> Result<CompatibilityLevel, ApiError> {
        let text = self.compatibility.as_deref().or(self.compatibility_level.as_deref()).unwrap_or_default();
        text.parse::<CompatibilityLevel>().map_err(ApiError::from)
    }
}

/// `PUT` answer.
#[derive(Debug, Serialize)]
pub struct ConfigUpdate {
    pub compatibility: &'static str,
}

/// `GET`/`DELETE` answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigBody {
    pub compatibility_level: &'static str,
}

fn body(level: CompatibilityLevel) -> Confluent<ConfigBody> {
    Confluent(ConfigBody { compatibility_level: level.as_str() })
}

pub async fn get_global(State(state): State<AppState>) -> Result<Confluent<ConfigBody>, ApiError> {
    Ok(body(state.registry.global_level().await?))
}

pub async fn put_global(
    _write: WriteAccess,
    State(state): State<AppState>,
    ConfluentJson(request): ConfluentJson<ConfigRequest>,
) -> Result<Confluent<ConfigUpdate>, ApiError> {
    let level = request.level()?;
    state.registry.set_level(Scope::Global, level).await?;
    Ok(Confluent(ConfigUpdate { compatibility: level.as_str() }))
}

/// Resets the global level to the default, answering the level it had.
pub async fn delete_global(
    _write: WriteAccess,
    State(state): State<AppState>,
) -> Result<Confluent<ConfigBody>, ApiError> {
    Ok(body(state.registry.delete_level(Scope::Global).await?))
}

/// `GET /config/{subject}` (`defaultToGlobal`): 40408 when the subject has no level of its own.
pub async fn get_subject(
    State(state): State<AppState>,
    ApiPath(subject): ApiPath<String>,
    params: Params,
) -> Result<Confluent<ConfigBody>, ApiError> {
    let subject = Subject::parse(&subject)?;
    Ok(body(state.registry.subject_level(&subject, params.flag("defaultToGlobal")).await?))
}

pub async fn put_subject(
    _write: WriteAccess,
    State(state): State<AppState>,
    ApiPath(subject): ApiPath<String>,
    ConfluentJson(request): ConfluentJson<ConfigRequest>,
) -> Result<Confluent<ConfigUpdate>, ApiError> {
    let subject = Subject::parse(&subject)?;
    let level = request.level()?;
    state.registry.set_level(Scope::Subject(&subject), level).await?;
    Ok(Confluent(ConfigUpdate { compatibility: level.as_str() }))
}

pub async fn delete_subject(
    _write: WriteAccess,
    State(state): State<AppState>,
    ApiPath(subject): ApiPath<String>,
) -> Result<Confluent<ConfigBody>, ApiError> {
    let subject = Subject::parse(&subject)?;
    Ok(body(state.registry.delete_level(Scope::Subject(&subject)).await?))
}
