//! Request extractors and the response wrapper, all answering errors as [`ApiError`].

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::ApiError;
use super::AppState;

/// The content type of every answer.
pub const CONTENT_TYPE_V1: &str = "application/vnd.schemaregistry.v1+json";
/// Request content types accepted (a missing one is accepted too: clients differ).
pub const ACCEPTED_CONTENT_TYPES: [&str; 3] =
    [CONTENT_TYPE_V1, "application/vnd.schemaregistry+json", "application/json"];

/// A JSON answer with the schema registry content type.
pub struct Confluent<T>(pub T);

impl<T: Serialize> IntoResponse for Confluent<T> {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self.0) {
            Ok(body) => ([(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_V1))], body).into_response(),
            Err(error) => {
                tracing::error!(%error, "cannot serialize a response");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        }
    }
}

/// A raw text answer (a schema) with the schema registry content type.
pub struct RawSchema(pub String);

impl IntoResponse for RawSchema {
    fn into_response(self) -> Response {
        ([(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_V1))], self.0).into_response()
    }
}

/// Path parameters; a malformed one is a 400 in Confluent's body.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(ApiPath(value)),
            Err(rejection) => Err(ApiError::BadRequest(rejection.body_text())),
        }
    }
}

/// Query parameters, read leniently: clients send `true`, `True`, `false`, `False`, and
/// parameters this registry ignores (`format`, `fetchMaxId`, `normalize`, …).
pub struct Params(HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<Vec<(String, String)>>::from_request_parts(parts, state).await {
            Ok(Query(pairs)) => Ok(Params(pairs.into_iter().collect())),
            Err(rejection) => Err(ApiError::BadRequest(rejection.body_text())),
        }
    }
}

impl Params {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// `true` when the parameter is `true` or `1` in any case.
    pub fn flag(&self, name: &str) -> bool {
        self.get(name).is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
    }

    /// Applies `offset` and `limit` (a negative limit means all), as list endpoints allow.
    pub fn page<T>(&self, items: Vec<T>) -> Vec<T> {
        let offset = self.get("offset").and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
        let limit = self.get("limit").and_then(|v| v.parse::<usize>().ok()).unwrap_or(usize::MAX);
        items.into_iter().skip(offset).take(limit).collect()
    }
}

/// A request body type: says which error a malformed body is.
pub trait RequestBody: DeserializeOwned {
    fn malformed(message: String) -> ApiError;
}

/// A JSON body under any accepted content type, within the size limit.
pub struct ConfluentJson<T>(pub T);

impl<T: RequestBody> FromRequest<AppState> for ConfluentJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(value) = request.headers().get(CONTENT_TYPE) {
            let text = value.to_str().unwrap_or_default();
            let essence = text.split(';').next().unwrap_or_default().trim();
            if !ACCEPTED_CONTENT_TYPES.iter().any(|t| t.eq_ignore_ascii_case(essence)) {
                return Err(ApiError::UnsupportedMediaType(text.to_owned()));
            }
        }
        let limit = state.max_body_bytes;
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge(limit)
            } else {
                ApiError::BadRequest(rejection.body_text())
            }
        })?;
        serde_json::from_slice(&bytes)
            .map(ConfluentJson)
            .map_err(|e| T::malformed(format!("the request body is not valid JSON for this endpoint: {e}")))
    }
}

/// Proof that the request may write: it carries `Authorization: Bearer <write_token>`, or no
/// token is configured.
pub struct WriteAccess;

impl FromRequestParts<AppState> for WriteAccess {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let expected = state.write_token.expose();
        if expected.is_empty() {
            return Ok(WriteAccess);
        }
        if eventline_common::http::bearer_matches(&parts.headers, expected) {
            Ok(WriteAccess)
        } else {
            Err(ApiError::Unauthorized)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_read_flags_leniently_and_page() {
        let params = Params(
            [("a", "True"), ("b", "false"), ("c", "1"), ("offset", "1"), ("limit", "2")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        );
        assert!(params.flag("a") && !params.flag("b") && params.flag("c") && !params.flag("missing"));
        assert_eq!(params.page(vec![1, 2, 3, 4]), [2, 3]);
        let all = Params([("limit".to_owned(), "-1".to_owned())].into_iter().collect());
        assert_eq!(all.page(vec![1, 2, 3]), [1, 2, 3]);
    }
}
