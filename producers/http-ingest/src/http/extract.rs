//! What a publish request carries besides its events: the caller (authenticated and within
//! its rate limit), the trace and correlation ids, the `Idempotency-Key`, and the body.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::StatusCode;
use eventline_common::envelope::TraceParent;
use eventline_common::publish::Origin;

use super::body::BodyKind;
use super::error::ApiError;
use super::AppState;
use crate::auth::Scopes;
use crate::idempotency::{request_scope, IdempotencyKey, ANONYMOUS};
use crate::ingest::Caller;

pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
pub const CORRELATION_ID_HEADER: &str = "x-correlation-id";
pub const MAX_CORRELATION_ID: usize = 128;

/// The trace context of a request, put in its extensions by [`super::trace::trace_context`].
#[derive(Debug, Clone, Copy)]
pub struct RequestTrace(pub TraceParent);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let caller = match &state.auth {
            Some(authenticator) => {
                let header = parts.headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
                let principal = authenticator.authenticate(header)?;
                Caller {
                    idempotency_scope: request_scope(&principal.subject),
                    client: principal.subject,
                    scopes: principal.scopes,
                }
            }
            None => {
                let address = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string());
                Caller {
                    client: address.unwrap_or_else(|| "unknown".to_owned()),
                    idempotency_scope: request_scope(ANONYMOUS),
                    scopes: Scopes::unrestricted(),
                }
            }
        };
        tracing::Span::current().record("client", caller.client.as_str());
        if let Some(limiter) = &state.limiter {
            limiter.check(&caller.client).map_err(ApiError::RateLimited)?;
        }
        Ok(caller)
    }
}

/// The headers that shape publishing: `Idempotency-Key`, `traceparent`, `X-Correlation-Id`.
pub struct RequestContext {
    pub idempotency_key: Option<IdempotencyKey>,
    pub origin: Origin,
}

impl FromRequestParts<AppState> for RequestContext {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let text = |name: &str| -> Result<Option<&str>, ApiError> {
            match parts.headers.get(name) {
                None => Ok(None),
                Some(value) => value
                    .to_str()
                    .map(Some)
                    .map_err(|_| ApiError::MalformedRequest(format!("the {name} header is not visible ASCII"))),
            }
        };
        let idempotency_key = text(IDEMPOTENCY_KEY_HEADER)?.map(IdempotencyKey::parse).transpose()?;
        let correlation_id = match text(CORRELATION_ID_HEADER)? {
            Some(id) if id.is_empty() || id.len() > MAX_CORRELATION_ID => {
                return Err(ApiError::MalformedRequest(format!(
                    "the X-Correlation-Id header must be 1 to {MAX_CORRELATION_ID} characters"
                )))
            }
            other => other.map(str::to_owned),
        };
        let traceparent = parts.extensions.get::<RequestTrace>().map(|t| t.0);
        Ok(Self { idempotency_key, origin: Origin { source: state.source.to_string(), traceparent, correlation_id } })
    }
}

/// A request body within the size limit, in an accepted media type.
pub struct EventBody {
    pub kind: BodyKind,
    pub bytes: Bytes,
}

impl FromRequest<AppState> for EventBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let content_type = request.headers().get(CONTENT_TYPE).map(|v| v.to_str().unwrap_or("(not ASCII)").to_owned());
        let kind = BodyKind::from_content_type(content_type.as_deref())?;
        let limit = state.max_body_bytes;
        let declared = request
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|length| length > limit as u64) {
            return Err(ApiError::BodyTooLarge(limit));
        }
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::BodyTooLarge(limit)
            } else {
                ApiError::MalformedRequest(format!("cannot read the request body: {}", rejection.body_text()))
            }
        })?;
        Ok(Self { kind, bytes })
    }
}
