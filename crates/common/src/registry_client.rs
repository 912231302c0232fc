//! A client for any Confluent-compatible schema registry (ours, Confluent's, Redpanda's), with
//! an id → schema cache: a schema id never changes meaning, so each is fetched once per process.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use apache_avro::Schema;
use serde::{Deserialize, Serialize};

use crate::avro::SchemaId;
use crate::config::Secret;

/// The media type of the Confluent REST API.
pub const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";
/// Confluent error codes the client tells apart.
pub const ERROR_SUBJECT_NOT_FOUND: u32 = 40401;
pub const ERROR_VERSION_NOT_FOUND: u32 = 40402;
pub const ERROR_SCHEMA_NOT_FOUND: u32 = 40403;
pub const ERROR_INCOMPATIBLE: u32 = 409;
pub const ERROR_INVALID_SCHEMA: u32 = 42201;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SchemaRegistrySettings {
    /// Base URL of the registry, e.g. `http://127.0.0.1:8081`.
    pub url: String,
    /// Bearer token sent with every request (empty: none).
    pub token: Secret,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for SchemaRegistrySettings {
    fn default() -> Self {
        Self { url: "http://127.0.0.1:8081".to_owned(), token: Secret::default(), timeout: Duration::from_secs(5) }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryClientError {
    #[error("schema registry at {url} is unreachable: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("schema id {0} is not known to the schema registry")]
    UnknownSchemaId(SchemaId),
    #[error("schema registry refused the request ({status}, error_code {error_code}): {message}")]
    Refused { status: u16, error_code: u32, message: String },
    #[error("schema registry answered something unexpected: {0}")]
    BadResponse(String),
    #[error("schema {id} from the registry is not a valid Avro schema: {message}")]
    InvalidSchema { id: SchemaId, message: String },
}

impl RegistryClientError {
    /// The Confluent `error_code`, when the registry answered with one.
    pub fn error_code(&self) -> Option<u32> {
        match self {
            Self::Refused { error_code, .. } => Some(*error_code),
            Self::UnknownSchemaId(_) => Some(ERROR_SCHEMA_NOT_FOUND),
            _ => None,
        }
    }
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error_code: u32,
    message: String,
}

#[derive(Debug, Deserialize)]
struct IdBody {
    id: u32,
}

#[derive(Debug, Deserialize)]
struct SchemaBody {
    schema: String,
}

/// A version of a subject as the registry returns it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct SubjectVersion {
    pub subject: String,
    pub id: u32,
    pub version: i32,
    pub schema: String,
}

#[derive(Debug, Deserialize)]
struct CompatibilityBody {
    is_compatible: bool,
}

#[derive(Clone)]
pub struct RegistryClient {
    base: String,
    token: Secret,
    http: reqwest::Client,
    cache: Arc<RwLock<HashMap<SchemaId, Arc<Schema>>>>,
}

impl RegistryClient {
    pub fn new(settings: &SchemaRegistrySettings) -> Result<Self, RegistryClientError> {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .build()
            .map_err(|source| RegistryClientError::Unreachable { url: settings.url.clone(), source })?;
        Ok(Self {
            base: settings.url.trim_end_matches('/').to_owned(),
            token: settings.token.clone(),
            http,
            cache: Arc::default(),
        })
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    /// The writer schema for `id`, from the cache or the registry.
    pub async fn schema_by_id(&self, id: SchemaId) -> Result<Arc<Schema>, RegistryClientError> {
        if let Some(schema) = self.cached(id) {
            return Ok(schema);
        }
        let body: SchemaBody = match self.get(&format!("/schemas/ids/{id}")).await {
            Err(RegistryClientError::Refused { error_code: ERROR_SCHEMA_NOT_FOUND, .. }) => {
                return Err(RegistryClientError::UnknownSchemaId(id))
            }
            other => other?,
        };
        let schema = Schema::parse_str(&body.schema)
            .map_err(|e| RegistryClientError::InvalidSchema { id, message: e.to_string() })?;
        let schema = Arc::new(schema);
        if let Ok(mut cache) = self.cache.write() {
            cache.insert(id, schema.clone());
        }
        Ok(schema)
    }

    fn cached(&self, id: SchemaId) -> Option<Arc<Schema>> {
        self.cache.read().ok().and_then(|cache| cache.get(&id).cloned())
    }

    /// Registers `schema` (Avro JSON) under `subject`; an identical schema returns its existing id.
    pub async fn register(&self, subject: &str, schema: &str) -> Result<SchemaId, RegistryClientError> {
        let body = serde_json::json!({ "schema": schema, "schemaType": "AVRO" });
        let IdBody { id } = self.post(&format!("/subjects/{}/versions", encode(subject)), &body).await?;
        Ok(SchemaId(id))
    }

    /// The latest version of `subject`.
    pub async fn latest(&self, subject: &str) -> Result<SubjectVersion, RegistryClientError> {
        self.get(&format!("/subjects/{}/versions/latest", encode(subject))).await
    }

    /// Every subject.
    pub async fn subjects(&self) -> Result<Vec<String>, RegistryClientError> {
        self.get("/subjects").await
    }

    /// Whether `schema` may be registered as the next version of `subject`.
    pub async fn is_compatible(&self, subject: &str, schema: &str) -> Result<bool, RegistryClientError> {
        let body = serde_json::json!({ "schema": schema, "schemaType": "AVRO" });
        let path = format!("/compatibility/subjects/{}/versions/latest", encode(subject));
        match self.post::<CompatibilityBody>(&path, &body).await {
            Ok(answer) => Ok(answer.is_compatible),
            // No version yet: anything is compatible.
            Err(RegistryClientError::Refused {
                error_code: ERROR_SUBJECT_NOT_FOUND | ERROR_VERSION_NOT_FOUND, ..
            }) => Ok(true),
            Err(other) => Err(other),
        }
    }

    /// `true` when the registry answers.
    pub async fn is_ready(&self) -> bool {
        self.get::<Vec<String>>("/schemas/types").await.is_ok()
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, RegistryClientError> {
        let request = self.http.get(format!("{}{path}", self.base));
        self.send(request).await
    }

    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T, RegistryClientError> {
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .json(body);
        self.send(request).await
    }

    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        mut request: reqwest::RequestBuilder,
    ) -> Result<T, RegistryClientError> {
        if !self.token.is_empty() {
            request = request.bearer_auth(self.token.expose());
        }
        let response = request
            .header(reqwest::header::ACCEPT, CONTENT_TYPE)
            .send()
            .await
            .map_err(|source| RegistryClientError::Unreachable { url: self.base.clone(), source })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|source| RegistryClientError::Unreachable { url: self.base.clone(), source })?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| RegistryClientError::BadResponse(e.to_string()));
        }
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(error) => Err(RegistryClientError::Refused {
                status: status.as_u16(),
                error_code: error.error_code,
                message: error.message,
            }),
            Err(_) => Err(RegistryClientError::Refused {
                status: status.as_u16(),
                error_code: u32::from(status.as_u16()),
                message: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
            }),
        }
    }
}

/// Subjects may contain characters that need escaping in a path (e.g. `/`).
fn encode(subject: &str) -> String {
    let mut out = String::with_capacity(subject.len());
    for byte in subject.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(byte as char),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn subjects_are_escaped_in_paths() {
        assert_eq!(super::encode("orders-com.x.OrderPlaced"), "orders-com.x.OrderPlaced");
        assert_eq!(super::encode("a/b c"), "a%2Fb%20c");
    }
}
