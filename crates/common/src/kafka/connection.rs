//! The connection check every service and command makes once, before its first Kafka client:
//! a metadata request with a deadline, which turns what librdkafka only logs while it retries
//! forever (bad SASL credentials, a broker certificate the configured CA did not sign, no broker
//! at the address) into one error that names the broker and the cause.
//!
//! Authentication and TLS failures end the check as soon as librdkafka reports them (they do not
//! heal by retrying); a broker that does not answer is given until the deadline, since it may be
//! starting.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use super::KafkaSettings;

/// How long the check waits for a broker that does not answer, at start-up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// One metadata request's share of the deadline; errors reported meanwhile are read after it.
const ATTEMPT: Duration = Duration::from_millis(250);
/// How long each look at the client's error events may wait.
const POLL: Duration = Duration::from_millis(20);

#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("cannot create a Kafka client for {bootstrap} (check the kafka settings): {source}")]
    Client {
        bootstrap: String,
        #[source]
        source: KafkaError,
    },
    #[error("Kafka broker {broker}: SASL authentication failed for user `{user}` with {mechanism}: {reason} (check the settings [kafka.properties] sasl.mechanism, sasl.username and sasl.password)")]
    Authentication { broker: String, user: String, mechanism: String, reason: String },
    #[error("Kafka broker {broker}: SSL handshake failed: {reason} (check the setting [kafka.properties] ssl.ca.location: the CA that signed the broker's certificate)")]
    Tls { broker: String, reason: String },
    #[error("Kafka at {bootstrap}: broker unreachable, no answer within {timeout:?}{}", last_error_suffix(.last_error))]
    Unreachable { bootstrap: String, timeout: Duration, last_error: Option<String> },
}

fn last_error_suffix(last: &Option<String>) -> String {
    last.as_ref().map(|error| format!(" (last error: {error})")).unwrap_or_default()
}

/// Waits until a broker of `kafka` answers a metadata request, at most `timeout`; fails at once
/// on an authentication or TLS error. Blocking work runs off the async workers.
pub async fn check_connection(kafka: &KafkaSettings, timeout: Duration) -> Result<(), ConnectionError> {
    let kafka = kafka.clone();
    let bootstrap = kafka.bootstrap_servers.clone();
    tokio::task::spawn_blocking(move || check_blocking(&kafka, timeout)).await.unwrap_or_else(|_| {
        Err(ConnectionError::Unreachable { bootstrap, timeout, last_error: Some("the check was cancelled".into()) })
    })
}

fn check_blocking(kafka: &KafkaSettings, timeout: Duration) -> Result<(), ConnectionError> {
    let bootstrap = &kafka.bootstrap_servers;
    let client: BaseConsumer<ErrorRecorder> = kafka
        .client_config()
        .create_with_context(ErrorRecorder::default())
        .map_err(|source| ConnectionError::Client { bootstrap: bootstrap.clone(), source })?;
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let answered = client.fetch_metadata(None, left.min(ATTEMPT));
        if answered.as_ref().is_ok_and(|metadata| !metadata.brokers().is_empty()) {
            return Ok(());
        }
        // Serves the client's error events, which call `ErrorRecorder::error`.
        let _ = client.poll(POLL);
        if let Some(error) = client.context().decisive(kafka) {
            return Err(error);
        }
        if Instant::now() >= deadline {
            let last_error = client.context().cause().or_else(|| answered.err().map(|e| e.to_string()));
            return Err(ConnectionError::Unreachable { bootstrap: bootstrap.clone(), timeout, last_error });
        }
    }
}

/// Keeps the errors librdkafka reports while the check runs.
#[derive(Default)]
struct ErrorRecorder {
    errors: Mutex<Vec<(Option<RDKafkaErrorCode>, String)>>,
}

impl ErrorRecorder {
    fn errors(&self) -> std::sync::MutexGuard<'_, Vec<(Option<RDKafkaErrorCode>, String)>> {
        self.errors.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The first error that retrying cannot cure, as the check reports it.
    fn decisive(&self, kafka: &KafkaSettings) -> Option<ConnectionError> {
        self.errors().iter().find_map(|(code, reason)| classify(kafka, *code, reason))
    }

    /// The last error that says more than "all brokers are down".
    fn cause(&self) -> Option<String> {
        let errors = self.errors();
        let telling = errors.iter().rev().find(|(code, _)| *code != Some(RDKafkaErrorCode::AllBrokersDown));
        telling.or(errors.last()).map(|(_, reason)| reason.clone())
    }
}

impl ClientContext for ErrorRecorder {
    fn error(&self, error: KafkaError, reason: &str) {
        self.errors().push((error.rdkafka_error_code(), reason.to_owned()));
    }
}

impl ConsumerContext for ErrorRecorder {}

/// An authentication or TLS failure, from librdkafka's error code and text (the text says
/// "SSL handshake failed" also where the code is a transport error: a TLS client on a plaintext
/// listener).
fn classify(kafka: &KafkaSettings, code: Option<RDKafkaErrorCode>, reason: &str) -> Option<ConnectionError> {
    let (broker, detail) = split_broker(reason);
    if code == Some(RDKafkaErrorCode::Authentication) {
        let property = |key: &str, default: &str| kafka.properties.get(key).map_or(default, String::as_str).to_owned();
        return Some(ConnectionError::Authentication {
            broker,
            user: property("sasl.username", ""),
            // librdkafka's default mechanism.
            mechanism: property("sasl.mechanism", "GSSAPI"),
            reason: detail.strip_prefix("SASL authentication error: ").unwrap_or(detail).to_owned(),
        });
    }
    if code == Some(RDKafkaErrorCode::SSL) || detail.starts_with("SSL handshake failed") {
        let reason = detail.strip_prefix("SSL handshake failed: ").unwrap_or(detail).to_owned();
        return Some(ConnectionError::Tls { broker, reason });
    }
    None
}

/// librdkafka starts a broker's errors with its name, `sasl_ssl://127.0.0.1:9093/bootstrap: `:
/// the address, and the rest of the text.
fn split_broker(reason: &str) -> (String, &str) {
    let parsed = reason.split_once("://").and_then(|(_, rest)| {
        let (name, detail) = rest.split_once(": ")?;
        let address = name.split_once('/').map_or(name, |(address, _)| address);
        Some((address.to_owned(), detail))
    });
    parsed.unwrap_or_else(|| ("(unknown)".to_owned(), reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sasl_failure_names_the_broker_the_user_the_mechanism_and_the_cause() {
        let mut kafka = KafkaSettings::default();
        kafka.properties.insert("sasl.mechanism".into(), "PLAIN".into());
        kafka.properties.insert("sasl.username".into(), "alice".into());
        kafka.properties.insert("sasl.password".into(), "alice-secret".into());
        let reason = "sasl_ssl://127.0.0.1:40123/bootstrap: SASL authentication error: Authentication failed: \
                      Invalid username or password (after 305ms in state AUTH_REQ)";
        let error = classify(&kafka, Some(RDKafkaErrorCode::Authentication), reason).map(|e| e.to_string());
        let error = error.unwrap_or_default();
        assert!(
            error.starts_with(
                "Kafka broker 127.0.0.1:40123: SASL authentication failed for user `alice` with PLAIN: \
                 Authentication failed: Invalid username or password"
            ),
            "{error}"
        );
        assert!(!error.contains("alice-secret"), "{error}");
    }

    #[test]
    fn an_untrusted_certificate_is_a_tls_failure_whatever_the_code() {
        let reason =
            "ssl://127.0.0.1:9093/1: SSL handshake failed: error:0A000086:SSL routines::certificate verify failed";
        for code in [Some(RDKafkaErrorCode::SSL), Some(RDKafkaErrorCode::BrokerTransportFailure)] {
            let error = classify(&KafkaSettings::default(), code, reason).map(|e| e.to_string()).unwrap_or_default();
            assert!(error.starts_with("Kafka broker 127.0.0.1:9093: SSL handshake failed: error:0A000086"), "{error}");
        }
    }

    #[test]
    fn a_refused_connection_is_not_decisive() {
        let reason = "127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused";
        let kafka = KafkaSettings::default();
        assert!(classify(&kafka, Some(RDKafkaErrorCode::BrokerTransportFailure), reason).is_none());
        assert!(classify(&kafka, Some(RDKafkaErrorCode::AllBrokersDown), "1/1 brokers are down").is_none());
    }
}
