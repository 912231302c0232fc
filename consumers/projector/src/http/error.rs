//! Every error of the query API is `application/problem+json` (RFC 9457): `type`
//! (`urn:eventline:problem:<slug>`), `title`, `status`, `detail`, plus fields per problem.

use std::time::Duration;

use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use eventline_common::kafka::Position;
use serde_json::json;

use crate::store::StoreError;
use eventline_common::generations::GenerationError;

pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A query parameter or header does not parse.
    #[error("`{parameter}` is not valid: {detail}")]
    BadRequest { parameter: &'static str, detail: String },
    #[error("no {what} {id}")]
    NotFound { what: &'static str, id: String },
    /// Read-your-writes: the read model did not reach the position within the wait timeout.
    #[error("the read model has not applied {}:{}:{} yet", position.topic, position.partition, position.offset)]
    NotCaughtUp { position: Position, waited: Duration },
    #[error("the read model cannot be read")]
    Store(#[from] StoreError),
    #[error("the active generation of the read model cannot be found")]
    Generations(#[from] GenerationError),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::NotCaughtUp { .. } => StatusCode::PRECONDITION_FAILED,
            ApiError::Store(_) | ApiError::Generations(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn slug(&self) -> &'static str {
        match self {
            ApiError::BadRequest { .. } => "bad-request",
            ApiError::NotFound { .. } => "not-found",
            ApiError::NotCaughtUp { .. } => "not-caught-up",
            ApiError::Store(_) | ApiError::Generations(_) => "internal",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut body = json!({
            "type": format!("urn:eventline:problem:{}", self.slug()),
            "title": status.canonical_reason().unwrap_or("error"),
            "status": status.as_u16(),
        });
        match &self {
            ApiError::Store(_) | ApiError::Generations(_) => {
                tracing::error!(error = ?self, "query failed");
                body["detail"] = json!("the read model cannot be read right now; try again");
            }
            ApiError::BadRequest { parameter, .. } => {
                body["detail"] = json!(self.to_string());
                body["parameter"] = json!(parameter);
            }
            ApiError::NotFound { .. } => body["detail"] = json!(self.to_string()),
            ApiError::NotCaughtUp { position, waited } => {
                body["detail"] = json!(format!(
                    "{self} (waited {} ms); the event is accepted but not visible here yet: retry the request",
                    waited.as_millis()
                ));
                body["position"] = json!(position);
            }
        }
        let mut response = (status, [(CONTENT_TYPE, PROBLEM_CONTENT_TYPE)], body.to_string()).into_response();
        if matches!(self, ApiError::NotCaughtUp { .. }) {
            response.headers_mut().insert(RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
        }
        response
    }
}
