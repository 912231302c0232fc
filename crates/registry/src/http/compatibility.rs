//! `/compatibility/subjects/{subject}/versions[/{version}]`: would this schema be accepted?

use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::extract::{ApiPath, Confluent, ConfluentJson, Params};
use super::subjects::SchemaRequest;
use super::{ApiError, AppState};
use crate::domain::{Incompatibility, Subject, VersionSpec};
use crate::service::Against;

#[derive(Debug, Serialize)]
pub struct CompatibilityBody {
    pub is_compatible: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<String>>,
}

impl CompatibilityBody {
    fn new(problems: &[Incompatibility], verbose: bool) -> Self {
        Self {
            is_compatible: problems.is_empty(),
            messages: verbose.then(|| problems.iter().map(ToString::to_string).collect()),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct SubjectVersionPath {
    subject: String,
    version: String,
}

/// Against one version (`latest` too), in the directions of the subject's level.
pub async fn against_version(
    State(state): State<AppState>,
    ApiPath(path): ApiPath<SubjectVersionPath>,
    params: Params,
    ConfluentJson(request): ConfluentJson<SchemaRequest>,
) -> Result<Confluent<CompatibilityBody>, ApiError> {
    let subject = Subject::parse(&path.subject)?;
    let spec = VersionSpec::parse(&path.version)?;
    let schema = request.parse()?;
    let problems = state.registry.test(&subject, &schema, Against::Version(spec)).await?;
    Ok(Confluent(CompatibilityBody::new(&problems, params.flag("verbose"))))
}

/// Against the versions a registration would check under the subject's level.
pub async fn against_registration(
    State(state): State<AppState>,
    ApiPath(subject): ApiPath<String>,
    params: Params,
    ConfluentJson(request): ConfluentJson<SchemaRequest>,
) -> Result<Confluent<CompatibilityBody>, ApiError> {
    let subject = Subject::parse(&subject)?;
    let schema = request.parse()?;
    let problems = state.registry.test(&subject, &schema, Against::Registration).await?;
    Ok(Confluent(CompatibilityBody::new(&problems, params.flag("verbose"))))
}
