//! The event envelope: CloudEvents (Kafka protocol binding, binary mode) plus W3C trace context.
//!
//! On the wire every event carries `ce_specversion`, `ce_id`, `ce_source`, `ce_type`, `ce_time`
//! (RFC 3339), optionally `ce_subject`, then `content-type`, `traceparent` and `correlation_id`.
//! The value is the Confluent-framed Avro record; the key is the aggregate id.

use chrono::{DateTime, SecondsFormat, Utc};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use uuid::Uuid;

pub const SPECVERSION: &str = "1.0";
pub const CONTENT_TYPE_AVRO: &str = "application/avro";

/// Header names, in one place.
pub mod header {
    pub const SPECVERSION: &str = "ce_specversion";
    pub const ID: &str = "ce_id";
    pub const SOURCE: &str = "ce_source";
    pub const TYPE: &str = "ce_type";
    pub const TIME: &str = "ce_time";
    pub const SUBJECT: &str = "ce_subject";
    pub const CONTENT_TYPE: &str = "content-type";
    pub const TRACEPARENT: &str = "traceparent";
    pub const CORRELATION_ID: &str = "correlation_id";
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EnvelopeError {
    #[error("header {0} is missing")]
    Missing(&'static str),
    #[error("header {name} is not valid: {problem}")]
    Invalid { name: &'static str, problem: String },
}

/// A W3C `traceparent`: version 00, trace id, parent span id, flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: u128,
    pub span_id: u64,
    pub sampled: bool,
}

impl TraceParent {
    /// A new trace (a request that arrived without one).
    pub fn new_root() -> Self {
        Self { trace_id: rand::random::<u128>().max(1), span_id: rand::random::<u64>().max(1), sampled: true }
    }

    /// A child span in the same trace.
    pub fn child(&self) -> Self {
        Self { span_id: rand::random::<u64>().max(1), ..*self }
    }

    pub fn parse(text: &str) -> Result<Self, EnvelopeError> {
        let invalid = |problem: &str| EnvelopeError::Invalid { name: header::TRACEPARENT, problem: problem.to_owned() };
        let parts: Vec<&str> = text.trim().split('-').collect();
        let [version, trace, span, flags] = parts.as_slice() else {
            return Err(invalid("expected version-traceid-spanid-flags"));
        };
        if version.len() != 2 || *version == "ff" || u8::from_str_radix(version, 16).is_err() {
            return Err(invalid("bad version"));
        }
        let trace_id = (trace.len() == 32)
            .then(|| u128::from_str_radix(trace, 16).ok())
            .flatten()
            .filter(|id| *id != 0)
            .ok_or_else(|| invalid("trace id must be 32 hex digits, not all zero"))?;
        let span_id = (span.len() == 16)
            .then(|| u64::from_str_radix(span, 16).ok())
            .flatten()
            .filter(|id| *id != 0)
            .ok_or_else(|| invalid("span id must be 16 hex digits, not all zero"))?;
        let flags = (flags.len() == 2)
            .then(|| u8::from_str_radix(flags, 16).ok())
            .flatten()
            .ok_or_else(|| invalid("flags must be 2 hex digits"))?;
        Ok(Self { trace_id, span_id, sampled: flags & 1 == 1 })
    }
}

impl std::fmt::Display for TraceParent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "00-{:032x}-{:016x}-{:02x}", self.trace_id, self.span_id, u8::from(self.sampled))
    }
}

/// The metadata of one event, carried in Kafka headers.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// The event id: unique per event, the idempotency key everywhere downstream.
    pub id: Uuid,
    /// Who produced it, a URI reference such as `/ingest/http` or `urn:shop:checkout`.
    pub source: String,
    /// The event type: the Avro record's full name, e.g. `com.eventline.commerce.OrderPlaced`.
    pub event_type: String,
    pub time: DateTime<Utc>,
    pub subject: Option<String>,
    pub traceparent: Option<TraceParent>,
    pub correlation_id: Option<String>,
}

impl Envelope {
    pub fn to_headers(&self) -> OwnedHeaders {
        let id = self.id.to_string();
        let time = self.time.to_rfc3339_opts(SecondsFormat::Millis, true);
        let mut headers = OwnedHeaders::new_with_capacity(9)
            .insert(h(header::SPECVERSION, SPECVERSION))
            .insert(h(header::ID, &id))
            .insert(h(header::SOURCE, &self.source))
            .insert(h(header::TYPE, &self.event_type))
            .insert(h(header::TIME, &time));
        if let Some(subject) = &self.subject {
            headers = headers.insert(h(header::SUBJECT, subject));
        }
        headers = headers.insert(h(header::CONTENT_TYPE, CONTENT_TYPE_AVRO));
        if let Some(traceparent) = &self.traceparent {
            headers = headers.insert(h(header::TRACEPARENT, &traceparent.to_string()));
        }
        if let Some(correlation_id) = &self.correlation_id {
            headers = headers.insert(h(header::CORRELATION_ID, correlation_id));
        }
        headers
    }

    /// Reads the envelope back from message headers; the required CloudEvents attributes must be
    /// present and well-formed.
    pub fn from_headers<H: Headers>(headers: &H) -> Result<Self, EnvelopeError> {
        let get = |name: &'static str| -> Result<Option<String>, EnvelopeError> {
            for entry in headers.iter() {
                if entry.key == name {
                    return match entry.value {
                        None => Ok(None),
                        Some(bytes) => String::from_utf8(bytes.to_vec())
                            .map(Some)
                            .map_err(|_| EnvelopeError::Invalid { name, problem: "not UTF-8".into() }),
                    };
                }
            }
            Ok(None)
        };
        let required = |name: &'static str| get(name)?.ok_or(EnvelopeError::Missing(name));
        let specversion = required(header::SPECVERSION)?;
        if specversion != SPECVERSION {
            return Err(EnvelopeError::Invalid {
                name: header::SPECVERSION,
                problem: format!("`{specversion}` is not 1.0"),
            });
        }
        let id = required(header::ID)?;
        let id =
            Uuid::parse_str(&id).map_err(|e| EnvelopeError::Invalid { name: header::ID, problem: e.to_string() })?;
        let time = required(header::TIME)?;
        let time = DateTime::parse_from_rfc3339(&time)
            .map_err(|e| EnvelopeError::Invalid { name: header::TIME, problem: e.to_string() })?
            .with_timezone(&Utc);
        Ok(Self {
            id,
            source: required(header::SOURCE)?,
            event_type: required(header::TYPE)?,
            time,
            subject: get(header::SUBJECT)?,
            traceparent: get(header::TRACEPARENT)?.map(|t| TraceParent::parse(&t)).transpose()?,
            correlation_id: get(header::CORRELATION_ID)?,
        })
    }
}

fn h<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header { key, value: Some(value) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> Envelope {
        Envelope {
            id: Uuid::new_v4(),
            source: "/ingest/http".into(),
            event_type: "com.eventline.commerce.OrderPlaced".into(),
            time: DateTime::parse_from_rfc3339("2026-11-23T10:00:00.123Z").unwrap().with_timezone(&Utc),
            subject: Some("order-1".into()),
            traceparent: Some(TraceParent::new_root()),
            correlation_id: Some("corr-1".into()),
        }
    }

    #[test]
    fn headers_round_trip() {
        let e = envelope();
        assert_eq!(Envelope::from_headers(&e.to_headers()).unwrap(), e);
    }

    #[test]
    fn headers_use_the_cloudevents_kafka_names() {
        let headers = envelope().to_headers();
        let names: Vec<&str> = headers.iter().map(|h| h.key).collect();
        assert_eq!(
            names,
            [
                "ce_specversion",
                "ce_id",
                "ce_source",
                "ce_type",
                "ce_time",
                "ce_subject",
                "content-type",
                "traceparent",
                "correlation_id"
            ]
        );
    }

    #[test]
    fn missing_and_malformed_headers_are_named() {
        let no_id = OwnedHeaders::new().insert(h(header::SPECVERSION, "1.0"));
        assert_eq!(Envelope::from_headers(&no_id), Err(EnvelopeError::Missing(header::ID)));
        let bad_id = OwnedHeaders::new().insert(h(header::SPECVERSION, "1.0")).insert(h(header::ID, "nope"));
        assert!(matches!(Envelope::from_headers(&bad_id), Err(EnvelopeError::Invalid { name: "ce_id", .. })));
    }

    #[test]
    fn traceparent_parses_and_prints() {
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let tp = TraceParent::parse(text).unwrap();
        assert_eq!(tp.to_string(), text);
        assert_eq!(tp.child().trace_id, tp.trace_id);
        for bad in [
            "",
            "00-0-0-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(TraceParent::parse(bad).is_err(), "{bad}");
        }
    }
}
