//! The one error type of the REST API, answered with Confluent's body
//! `{"error_code": N, "message": "..."}`. 5xx answers say nothing internal; the cause is logged.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::extract::Confluent;
use crate::domain::{LevelError, SchemaError, SubjectError, VersionError};
use crate::service::RegistryError;

const INTERNAL_MESSAGE: &str = "Error in the backend data store";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    InvalidSchema(#[from] SchemaError),
    #[error(transparent)]
    InvalidSubject(#[from] SubjectError),
    #[error(transparent)]
    InvalidVersion(#[from] VersionError),
    #[error(transparent)]
    InvalidLevel(#[from] LevelError),
    /// A body that is not the JSON the endpoint expects, answered with the endpoint's 422 code.
    #[error("{message}")]
    MalformedBody { error_code: u32, message: String },
    #[error("Unauthorized: this operation needs the header `Authorization: Bearer <write token>`")]
    Unauthorized,
    #[error(
        "Unsupported media type `{0}`: send application/vnd.schemaregistry.v1+json, \
         application/vnd.schemaregistry+json or application/json"
    )]
    UnsupportedMediaType(String),
    #[error("The request body is larger than the limit of {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    BadRequest(String),
    #[error("HTTP 404 Not Found")]
    RouteNotFound,
    #[error("HTTP 405 Method Not Allowed")]
    MethodNotAllowed,
}

#[derive(Debug, Serialize)]
pub struct ErrorBody {
    pub error_code: u32,
    pub message: String,
}

impl ApiError {
    /// The HTTP status and Confluent `error_code`.
    pub fn status_and_code(&self) -> (StatusCode, u32) {
        use RegistryError as R;
        match self {
            ApiError::Registry(error) => match error {
                R::SubjectNotFound(_) => (StatusCode::NOT_FOUND, 40401),
                R::VersionNotFound { .. } => (StatusCode::NOT_FOUND, 40402),
                R::SchemaNotFound(_) | R::SchemaNotInSubject => (StatusCode::NOT_FOUND, 40403),
                R::SubjectSoftDeleted(_) => (StatusCode::NOT_FOUND, 40404),
                R::SubjectNotSoftDeleted(_) => (StatusCode::NOT_FOUND, 40405),
                R::VersionSoftDeleted { .. } => (StatusCode::NOT_FOUND, 40406),
                R::VersionNotSoftDeleted { .. } => (StatusCode::NOT_FOUND, 40407),
                R::NoSubjectLevel(_) => (StatusCode::NOT_FOUND, 40408),
                R::Incompatible { .. } => (StatusCode::CONFLICT, 409),
                R::StoredSchemaInvalid { .. } | R::Contention(_) | R::Store(_) => {
                    (StatusCode::INTERNAL_SERVER_ERROR, 50001)
                }
            },
            ApiError::InvalidSchema(_) => (StatusCode::UNPROCESSABLE_ENTITY, 42201),
            ApiError::InvalidVersion(_) => (StatusCode::UNPROCESSABLE_ENTITY, 42202),
            ApiError::InvalidLevel(_) => (StatusCode::UNPROCESSABLE_ENTITY, 42203),
            ApiError::InvalidSubject(_) => (StatusCode::UNPROCESSABLE_ENTITY, 42208),
            ApiError::MalformedBody { error_code, .. } => (StatusCode::UNPROCESSABLE_ENTITY, *error_code),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, 40101),
            ApiError::UnsupportedMediaType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, 415),
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, 413),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, 400),
            ApiError::RouteNotFound => (StatusCode::NOT_FOUND, 404),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, 405),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, error_code) = self.status_and_code();
        let message = if status.is_server_error() {
            tracing::error!(error = %crate::domain::error_chain(&self), "request failed");
            INTERNAL_MESSAGE.to_owned()
        } else {
            self.to_string()
        };
        (status, Confluent(ErrorBody { error_code, message })).into_response()
    }
}

/// The fallback for unknown paths.
pub async fn route_not_found() -> ApiError {
    ApiError::RouteNotFound
}

/// The fallback for known paths with another method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
