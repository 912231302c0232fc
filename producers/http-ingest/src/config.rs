//! The `[ingest]` config section (`EVENTLINE_INGEST__<KEY>`, nested tables with another `__`,
//! e.g. `EVENTLINE_INGEST__AUTH__ENABLED=true`). Every default works for `eventline up`.

use std::path::PathBuf;
use std::time::Duration;

use eventline_common::config::Secret;
use eventline_common::kafka::producer::ProducerSettings;
use serde::{Deserialize, Serialize};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_MAX_BATCH: usize = 500;
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
pub const DEFAULT_SOURCE: &str = "/ingest/http";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestSettings {
    /// Address the HTTP API listens on.
    pub listen: String,
    /// Most events in one `POST /v1/events:batch`; more is answered 413.
    pub max_batch: usize,
    /// Largest accepted request body; larger requests get 413.
    pub max_body_bytes: usize,
    /// How long an `Idempotency-Key` or an event id is remembered.
    #[serde(with = "humantime_serde")]
    pub idempotency_window: Duration,
    /// How often expired idempotency records are deleted.
    #[serde(with = "humantime_serde")]
    pub idempotency_purge_interval: Duration,
    /// How long a request waits for the broker's acknowledgement before it is answered 503
    /// (the producer's delivery timeout).
    #[serde(with = "humantime_serde")]
    pub broker_wait: Duration,
    /// How long the producer waits to fill a batch (latency against throughput).
    #[serde(with = "humantime_serde")]
    pub linger: Duration,
    /// Producer compression: `none`, `gzip`, `snappy`, `lz4` or `zstd`.
    pub compression: String,
    /// The CloudEvents `source` of events that do not name their own.
    pub source: String,
    /// How long in-flight requests may take to finish at shutdown (standalone binary only).
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    pub auth: AuthSettings,
    pub rate_limit: RateLimitSettings,
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.to_owned(),
            max_batch: DEFAULT_MAX_BATCH,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            idempotency_window: Duration::from_secs(24 * 3600),
            idempotency_purge_interval: Duration::from_secs(300),
            broker_wait: Duration::from_secs(5),
            linger: Duration::from_millis(1),
            compression: "lz4".to_owned(),
            source: DEFAULT_SOURCE.to_owned(),
            drain_timeout: Duration::from_secs(10),
            auth: AuthSettings::default(),
            rate_limit: RateLimitSettings::default(),
        }
    }
}

impl IngestSettings {
    /// The producer settings the ingest service's publisher must be built with: a send fails
    /// after `broker_wait`, so a request never waits longer than that for the broker.
    pub fn producer_settings(&self) -> ProducerSettings {
        ProducerSettings {
            delivery_timeout: self.broker_wait,
            linger: self.linger,
            compression: self.compression.clone(),
        }
    }
}

/// `[ingest.auth]`: bearer JWTs. Off by default so `eventline up` works without tokens.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    pub enabled: bool,
    /// Shared secret for HS256 tokens (empty: HS256 is not accepted).
    pub hs256_secret: Secret,
    /// PEM public key (SPKI or PKCS#1) for RS256 tokens (empty: see `rs256_public_key_file`).
    pub rs256_public_key: String,
    /// A file holding that PEM key, read at start-up.
    pub rs256_public_key_file: Option<PathBuf>,
    /// Required `iss` claim.
    pub issuer: String,
    /// Required `aud` claim.
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf`.
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            hs256_secret: Secret::default(),
            rs256_public_key: String::new(),
            rs256_public_key_file: None,
            issuer: "eventline".to_owned(),
            audience: "eventline-ingest".to_owned(),
            leeway: Duration::from_secs(30),
        }
    }
}

impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSettings")
            .field("enabled", &self.enabled)
            .field("hs256_secret", &self.hs256_secret)
            .field("rs256_public_key", &(!self.rs256_public_key.is_empty()))
            .field("rs256_public_key_file", &self.rs256_public_key_file)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .finish()
    }
}

/// `[ingest.rate_limit]`: a token bucket per client (the JWT `sub`, or the remote address
/// when auth is off). A request takes one token, whatever its number of events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSettings {
    pub enabled: bool,
    /// Tokens added per second.
    pub requests_per_second: f64,
    /// Bucket size: how many requests may arrive at once after a quiet spell.
    pub burst: u32,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self { enabled: true, requests_per_second: 1000.0, burst: 2000 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventline_common::config::{ConfigSource, Section};

    #[test]
    fn defaults_work_without_a_file() {
        let settings: IngestSettings = ConfigSource::from_toml("").unwrap().section(Section::Ingest).unwrap();
        assert_eq!(settings, IngestSettings::default());
        assert_eq!(settings.listen, "127.0.0.1:8080");
        assert_eq!(settings.max_batch, 500);
        assert_eq!(settings.idempotency_window, Duration::from_secs(86_400));
        assert!(!settings.auth.enabled);
        assert_eq!(settings.producer_settings().delivery_timeout, settings.broker_wait);
    }

    #[test]
    fn nested_tables_apply_and_unknown_keys_are_rejected() {
        let source = ConfigSource::from_toml(
            "[ingest]\nbroker_wait = \"2s\"\n[ingest.auth]\nenabled = true\nhs256_secret = \"s3cret\"\n\
             [ingest.rate_limit]\nrequests_per_second = 5.0\nburst = 10",
        )
        .unwrap();
        let settings: IngestSettings = source.section(Section::Ingest).unwrap();
        assert_eq!(settings.broker_wait, Duration::from_secs(2));
        assert!(settings.auth.enabled);
        assert_eq!(settings.auth.hs256_secret.expose(), "s3cret");
        assert_eq!(settings.auth.issuer, "eventline", "unset keys keep their defaults");
        assert_eq!((settings.rate_limit.requests_per_second, settings.rate_limit.burst), (5.0, 10));
        assert!(!format!("{settings:?}").contains("s3cret"));

        for typo in ["[ingest]\nmax_bach = 1", "[ingest.auth]\nissuer_url = \"x\""] {
            let err = ConfigSource::from_toml(typo).unwrap().section::<IngestSettings>(Section::Ingest).unwrap_err();
            let text = err.to_string();
            assert!(text.contains("max_bach") || text.contains("issuer_url"), "{text}");
        }
    }
}
