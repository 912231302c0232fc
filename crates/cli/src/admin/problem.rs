//! Admin API errors as `application/problem+json` (RFC 9457): a type, a title, the status and
//! a detail that says what is wrong.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use eventline_common::telemetry::error_chain;

use crate::commands::dlq::DlqError;
use crate::commands::replay::ReplayError;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
}

impl Problem {
    fn new(status: StatusCode, slug: &str, title: &'static str, detail: impl Into<String>) -> Self {
        Self { kind: format!("urn:eventline:problem:{slug}"), title, status: status.as_u16(), detail: detail.into() }
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Missing or wrong admin token",
            "send Authorization: Bearer <admin.token>",
        )
    }

    /// The request is wrong (a malformed date-time, an offset past the end, an unknown topic).
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", "The request cannot be carried out", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "No such thing", detail)
    }

    /// Refused because of the system's state (live members of a group, a rebuild running).
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", "Refused in the current state", detail)
    }

    /// The broker or a database did not answer or failed.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "A dependency failed", detail)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_string(&self).unwrap_or_default();
        (status, [(header::CONTENT_TYPE, "application/problem+json")], body).into_response()
    }
}

impl From<ReplayError> for Problem {
    fn from(error: ReplayError) -> Self {
        let detail = error_chain(&error);
        match error {
            ReplayError::UnknownGroup { .. } => Self::not_found(detail),
            ReplayError::LiveMembers { .. } | ReplayError::MembersUnknown { .. } => Self::conflict(detail),
            ReplayError::EmptyGroup
            | ReplayError::UnknownTopic(_)
            | ReplayError::UnknownPartition { .. }
            | ReplayError::BadTopicSelection(_)
            | ReplayError::BadDateTime(_)
            | ReplayError::OffsetOutOfRange { .. }
            | ReplayError::NoCurrentOffset { .. }
            | ReplayError::NoDatabase => Self::bad_request(detail),
            ReplayError::Store { .. }
            | ReplayError::Members { .. }
            | ReplayError::Commit { .. }
            | ReplayError::Kafka { .. }
            | ReplayError::Task(_) => Self::unavailable(detail),
        }
    }
}

impl From<DlqError> for Problem {
    fn from(error: DlqError) -> Self {
        let detail = error_chain(&error);
        match error {
            DlqError::NoDeadLetterTopic { .. }
            | DlqError::UnknownDeadLetterTopic { .. }
            | DlqError::NoRecordAt { .. } => Self::not_found(detail),
            DlqError::Kafka { .. } | DlqError::MarkerTopic { .. } => Self::unavailable(detail),
            _ => Self::bad_request(detail),
        }
    }
}
