//! Answers: every error is `application/problem+json` (RFC 9457: `type`, `title`, `status`,
//! `detail`, plus `errors: [{path, message}]` where fields are at fault). 5xx answers say nothing
//! internal; the cause is logged.

use std::time::Duration;

use axum::http::header::{CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use eventline_common::avro_json::FieldError;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};

use crate::auth::AuthError;
use crate::idempotency::InvalidKey;

pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";
pub const REPLAYED_HEADER: &str = "idempotent-replayed";
pub const REALM: &str = "eventline-ingest";

/// The problem types this API answers with (`urn:eventline:problem:<slug>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    InvalidEvent,
    UnknownEventType,
    MalformedJson,
    MalformedRequest,
    BodyTooLarge,
    BatchTooLarge,
    UnsupportedMediaType,
    Unauthorized,
    Forbidden,
    RateLimited,
    IdempotencyKeyReused,
    RequestInProgress,
    EventIdConflict,
    EventInProgress,
    BatchRejected,
    BrokerUnavailable,
    Unavailable,
    NotFound,
    MethodNotAllowed,
}

impl Problem {
    pub const ALL: [Problem; 19] = [
        Problem::InvalidEvent,
        Problem::UnknownEventType,
        Problem::MalformedJson,
        Problem::MalformedRequest,
        Problem::BodyTooLarge,
        Problem::BatchTooLarge,
        Problem::UnsupportedMediaType,
        Problem::Unauthorized,
        Problem::Forbidden,
        Problem::RateLimited,
        Problem::IdempotencyKeyReused,
        Problem::RequestInProgress,
        Problem::EventIdConflict,
        Problem::EventInProgress,
        Problem::BatchRejected,
        Problem::BrokerUnavailable,
        Problem::Unavailable,
        Problem::NotFound,
        Problem::MethodNotAllowed,
    ];

    pub fn slug(self) -> &'static str {
        self.describe().0
    }

    pub fn title(self) -> &'static str {
        self.describe().1
    }

    pub fn uri(self) -> String {
        format!("urn:eventline:problem:{}", self.slug())
    }

    fn describe(self) -> (&'static str, &'static str) {
        match self {
            Problem::InvalidEvent => ("invalid-event", "The event does not fit its schema"),
            Problem::UnknownEventType => ("unknown-event-type", "Unknown event type"),
            Problem::MalformedJson => ("malformed-json", "The body is not valid JSON"),
            Problem::MalformedRequest => ("malformed-request", "Malformed request"),
            Problem::BodyTooLarge => ("body-too-large", "Request body too large"),
            Problem::BatchTooLarge => ("batch-too-large", "Too many events in one batch"),
            Problem::UnsupportedMediaType => ("unsupported-media-type", "Unsupported media type"),
            Problem::Unauthorized => ("unauthorized", "Authentication required"),
            Problem::Forbidden => ("forbidden", "Not allowed to publish this event type"),
            Problem::RateLimited => ("rate-limited", "Too many requests"),
            Problem::IdempotencyKeyReused => {
                ("idempotency-key-reused", "Idempotency-Key reused for a different request")
            }
            Problem::RequestInProgress => ("request-in-progress", "A request with this Idempotency-Key is in progress"),
            Problem::EventIdConflict => ("event-id-conflict", "The event id was already used for a different event"),
            Problem::EventInProgress => ("event-in-progress", "An event with this id is being published"),
            Problem::BatchRejected => ("batch-rejected", "No event of the batch was published"),
            Problem::BrokerUnavailable => ("broker-unavailable", "The broker did not acknowledge in time"),
            Problem::Unavailable => ("unavailable", "Service temporarily unavailable"),
            Problem::NotFound => ("not-found", "Not found"),
            Problem::MethodNotAllowed => ("method-not-allowed", "Method not allowed"),
        }
    }

    /// The problem+json body.
    pub fn body(self, status: u16, detail: impl Into<String>) -> Json {
        json!({"type": self.uri(), "title": self.title(), "status": status, "detail": detail.into()})
    }
}

/// A response that can be remembered under an `Idempotency-Key` and replayed as it was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub status: u16,
    pub problem: bool,
    pub body: Json,
    #[serde(skip)]
    pub retry_after: Option<Duration>,
    #[serde(skip)]
    pub www_authenticate: Option<String>,
    #[serde(skip)]
    pub replayed: bool,
}

impl Answer {
    pub fn json(status: u16, body: Json) -> Self {
        Self { status, problem: false, body, retry_after: None, www_authenticate: None, replayed: false }
    }

    pub fn problem(problem: Problem, status: u16, detail: impl Into<String>) -> Self {
        Self { problem: true, ..Self::json(status, problem.body(status, detail)) }
    }

    pub fn with_errors(mut self, errors: &[FieldError]) -> Self {
        self.body["errors"] = json!(errors);
        self
    }

    pub fn retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }

    /// Answers worth replaying for a retry with the same key: final ones. Failures a retry may
    /// get past (401, 403, 409, 429, 5xx) are not remembered.
    pub fn is_final(&self) -> bool {
        matches!(self.status, 200..=299 | 400 | 413 | 415 | 422)
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let content_type = if self.problem { PROBLEM_CONTENT_TYPE } else { "application/json" };
        let mut response =
            (status, [(CONTENT_TYPE, HeaderValue::from_static(content_type))], self.body.to_string()).into_response();
        let headers = response.headers_mut();
        if let Some(wait) = self.retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(wait.as_secs_f64().ceil().max(1.0) as u64));
        }
        if let Some(challenge) = self.www_authenticate.and_then(|c| HeaderValue::from_str(&c).ok()) {
            headers.insert(WWW_AUTHENTICATE, challenge);
        }
        if self.replayed {
            headers.insert(HeaderName::from_static(REPLAYED_HEADER), HeaderValue::from_static("true"));
        }
        response
    }
}

/// Why a request was refused before (or instead of) publishing.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthorized(#[from] AuthError),
    #[error("this client sent too many requests; retry after {0:?}")]
    RateLimited(Duration),
    #[error("the request body is larger than the limit of {0} bytes")]
    BodyTooLarge(usize),
    #[error("the batch has {count} events; at most {limit} are accepted in one request")]
    BatchTooLarge { count: usize, limit: usize },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("the body is not valid JSON: {message} (line {line}, column {column})")]
    MalformedJson { line: usize, column: usize, message: String },
    #[error("{0}")]
    MalformedRequest(String),
    #[error(transparent)]
    InvalidIdempotencyKey(#[from] InvalidKey),
    #[error("this Idempotency-Key was used before for a different request (another route or body); use a new key for a new request")]
    IdempotencyKeyReused,
    #[error("a request with this Idempotency-Key is still in progress; retry when it has finished")]
    RequestInProgress,
    /// A dependency (database) failed: logged, answered 503 without details.
    #[error("the service cannot process requests right now")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("no route {0}")]
    NotFound(String),
    #[error("this route does not accept {0}")]
    MethodNotAllowed(String),
}

/// How long clients are asked to wait after a 503 when nothing better is known.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

impl ApiError {
    pub fn into_answer(self) -> Answer {
        let detail = self.to_string();
        match self {
            ApiError::Unauthorized(error) => {
                let challenge = match error {
                    AuthError::Missing => format!("Bearer realm=\"{REALM}\""),
                    AuthError::Invalid(reason) => {
                        format!(
                            "Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{}\"",
                            reason.replace('"', "'")
                        )
                    }
                };
                Answer { www_authenticate: Some(challenge), ..Answer::problem(Problem::Unauthorized, 401, detail) }
            }
            ApiError::RateLimited(wait) => Answer::problem(Problem::RateLimited, 429, detail).retry_after(wait),
            ApiError::BodyTooLarge(_) => Answer::problem(Problem::BodyTooLarge, 413, detail),
            ApiError::BatchTooLarge { .. } => Answer::problem(Problem::BatchTooLarge, 413, detail),
            ApiError::UnsupportedMediaType(_) => Answer::problem(Problem::UnsupportedMediaType, 415, detail),
            ApiError::MalformedJson { line, column, .. } => {
                let mut answer = Answer::problem(Problem::MalformedJson, 400, detail.clone());
                answer.body["line"] = json!(line);
                answer.body["column"] = json!(column);
                answer.with_errors(&[FieldError { path: "$".into(), message: detail }])
            }
            ApiError::MalformedRequest(_) | ApiError::InvalidIdempotencyKey(_) => {
                Answer::problem(Problem::MalformedRequest, 400, detail)
            }
            ApiError::IdempotencyKeyReused => Answer::problem(Problem::IdempotencyKeyReused, 422, detail),
            ApiError::RequestInProgress => {
                Answer::problem(Problem::RequestInProgress, 409, detail).retry_after(DEFAULT_RETRY_AFTER)
            }
            ApiError::Unavailable(cause) => {
                tracing::error!(error = %crate::ingest::error_chain(cause.as_ref()), "request failed");
                Answer::problem(Problem::Unavailable, 503, detail).retry_after(DEFAULT_RETRY_AFTER)
            }
            ApiError::NotFound(_) => Answer::problem(Problem::NotFound, 404, detail),
            ApiError::MethodNotAllowed(_) => Answer::problem(Problem::MethodNotAllowed, 405, detail),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.into_answer().into_response()
    }
}

/// The fallback for unknown paths.
pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(uri.path().to_owned())
}

/// The fallback for known paths with another method.
pub async fn method_not_allowed(method: axum::http::Method) -> ApiError {
    ApiError::MethodNotAllowed(method.to_string())
}
