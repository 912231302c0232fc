//! The dead-letter topic of a consumer group (`<group>.dlq` by default).
//!
//! A dead-lettered record keeps the original key, value and headers, and gains the
//! `eventline_dlq_*` headers below: where it came from, why it failed, how many handler calls
//! it got, when and for which group. Headers of an earlier dead-lettering (a redriven event that
//! failed again) are replaced, not repeated. [`DeadLetterInfo::from_headers`] reads them back.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};

use crate::kafka::producer::{EventProducer, OutgoingRecord, ProduceError, ProducerSettings};
use crate::kafka::KafkaSettings;

/// Header names, in one place.
pub mod header {
    /// Every dead-letter header starts with this.
    pub const PREFIX: &str = "eventline_dlq_";
    pub const ORIGINAL_TOPIC: &str = "eventline_dlq_original_topic";
    pub const ORIGINAL_PARTITION: &str = "eventline_dlq_original_partition";
    pub const ORIGINAL_OFFSET: &str = "eventline_dlq_original_offset";
    /// The error message (with its causes).
    pub const ERROR: &str = "eventline_dlq_error";
    /// A [`DeadLetterReason`](super::DeadLetterReason): `decode`, `unknown_schema`,
    /// `permanent` or `retries_exhausted`.
    pub const ERROR_KIND: &str = "eventline_dlq_error_kind";
    /// Handler calls that included the event (0 when it never reached the handler).
    pub const ATTEMPTS: &str = "eventline_dlq_attempts";
    /// When it was dead-lettered, RFC 3339.
    pub const TIME: &str = "eventline_dlq_time";
    pub const GROUP: &str = "eventline_dlq_group";
    /// On a redriven record (`eventline dlq redrive`): the dead letter it was written from,
    /// `<dlq topic>:<partition>:<offset>`. Not a dead-letter header: it stays on the record if
    /// it is dead-lettered again, so that letter says where it was redriven from.
    pub const REDRIVEN_FROM: &str = "eventline_redriven_from";
}

/// Why an event went to the dead-letter topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeadLetterReason {
    /// The bytes, the envelope or the key could not be read.
    Decode,
    /// The schema id in the frame is not known to the registry.
    UnknownSchema,
    /// The handler said the event can never be handled.
    Permanent,
    /// The handler kept failing with retryable errors until the retry policy ran out.
    RetriesExhausted,
}

impl DeadLetterReason {
    pub const ALL: [Self; 4] = [Self::Decode, Self::UnknownSchema, Self::Permanent, Self::RetriesExhausted];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Decode => "decode",
            Self::UnknownSchema => "unknown_schema",
            Self::Permanent => "permanent",
            Self::RetriesExhausted => "retries_exhausted",
        }
    }
}

impl fmt::Display for DeadLetterReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeadLetterReason {
    type Err = DeadLetterHeaderError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|reason| reason.as_str() == text)
            .ok_or_else(|| DeadLetterHeaderError::Invalid { name: header::ERROR_KIND, value: text.to_owned() })
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DeadLetterHeaderError {
    #[error("dead-letter header {0} is missing")]
    Missing(&'static str),
    #[error("dead-letter header {name} has an invalid value `{value}`")]
    Invalid { name: &'static str, value: String },
}

/// What the dead-letter headers of a record say.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetterInfo {
    pub original_topic: String,
    pub original_partition: i32,
    pub original_offset: i64,
    pub error: String,
    pub reason: DeadLetterReason,
    pub attempts: u32,
    pub time: DateTime<Utc>,
    pub group: String,
}

impl DeadLetterInfo {
    pub fn from_headers<H: Headers>(headers: &H) -> Result<Self, DeadLetterHeaderError> {
        let text = |name: &'static str| -> Result<String, DeadLetterHeaderError> {
            let value = headers
                .iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value)
                .ok_or(DeadLetterHeaderError::Missing(name))?;
            String::from_utf8(value.to_vec()).map_err(|_| DeadLetterHeaderError::Invalid {
                name,
                value: String::from_utf8_lossy(value).into_owned(),
            })
        };
        fn parse<T: FromStr>(name: &'static str, value: String) -> Result<T, DeadLetterHeaderError> {
            value.parse().map_err(|_| DeadLetterHeaderError::Invalid { name, value })
        }
        let time = text(header::TIME)?;
        let time = DateTime::parse_from_rfc3339(&time)
            .map_err(|_| DeadLetterHeaderError::Invalid { name: header::TIME, value: time.clone() })?
            .with_timezone(&Utc);
        Ok(Self {
            original_topic: text(header::ORIGINAL_TOPIC)?,
            original_partition: parse(header::ORIGINAL_PARTITION, text(header::ORIGINAL_PARTITION)?)?,
            original_offset: parse(header::ORIGINAL_OFFSET, text(header::ORIGINAL_OFFSET)?)?,
            error: text(header::ERROR)?,
            reason: text(header::ERROR_KIND)?.parse()?,
            attempts: parse(header::ATTEMPTS, text(header::ATTEMPTS)?)?,
            time,
            group: text(header::GROUP)?,
        })
    }

    /// The original headers without any dead-letter header, plus these.
    pub fn to_headers<H: Headers>(&self, original: Option<&H>) -> OwnedHeaders {
        let mut headers = OwnedHeaders::new();
        if let Some(original) = original {
            for entry in original.iter().filter(|h| !h.key.starts_with(header::PREFIX)) {
                headers = headers.insert(Header { key: entry.key, value: entry.value });
            }
        }
        let fields = [
            (header::ORIGINAL_TOPIC, self.original_topic.clone()),
            (header::ORIGINAL_PARTITION, self.original_partition.to_string()),
            (header::ORIGINAL_OFFSET, self.original_offset.to_string()),
            (header::ERROR, self.error.clone()),
            (header::ERROR_KIND, self.reason.as_str().to_owned()),
            (header::ATTEMPTS, self.attempts.to_string()),
            (header::TIME, self.time.to_rfc3339_opts(SecondsFormat::Millis, true)),
            (header::GROUP, self.group.clone()),
        ];
        for (key, value) in &fields {
            headers = headers.insert(Header { key, value: Some(value.as_bytes()) });
        }
        headers
    }
}

/// How long a dead letter may wait for the broker's acknowledgement.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Writes dead letters with the [`EventProducer`] (idempotent, `acks=all`, replaced after a
/// record that was not acknowledged), one at a time, each awaited.
#[derive(Clone)]
pub(crate) struct DeadLetterProducer {
    producer: EventProducer,
    topic: String,
    group: String,
}

impl DeadLetterProducer {
    pub(crate) fn new(kafka: &KafkaSettings, topic: String, group: String) -> Result<Self, KafkaError> {
        let settings = ProducerSettings { delivery_timeout: DELIVERY_TIMEOUT, ..ProducerSettings::default() };
        let producer = EventProducer::new(kafka, &settings).map_err(ProduceError::into_kafka)?;
        Ok(Self { producer, topic, group })
    }

    pub(crate) fn topic(&self) -> &str {
        &self.topic
    }

    /// Writes `message` to the dead-letter topic and waits for the acknowledgement.
    pub(crate) async fn send(
        &self,
        message: &OwnedMessage,
        reason: DeadLetterReason,
        error: &str,
        attempts: u32,
    ) -> Result<(), ProduceError> {
        let info = DeadLetterInfo {
            original_topic: message.topic().to_owned(),
            original_partition: message.partition(),
            original_offset: message.offset(),
            error: error.to_owned(),
            reason,
            attempts,
            time: Utc::now(),
            group: self.group.clone(),
        };
        let record = OutgoingRecord {
            topic: &self.topic,
            partition: None,
            key: message.key(),
            payload: message.payload(),
            headers: info.to_headers(message.headers()),
            timestamp: None,
        };
        self.producer.send_record(record).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_replace_an_earlier_dead_lettering() {
        let info = DeadLetterInfo {
            original_topic: "orders".into(),
            original_partition: 3,
            original_offset: 42,
            error: "boom: caused by x".into(),
            reason: DeadLetterReason::RetriesExhausted,
            attempts: 5,
            time: DateTime::parse_from_rfc3339("2026-05-01T12:00:00.123Z").unwrap().with_timezone(&Utc),
            group: "projector".into(),
        };
        let original = OwnedHeaders::new()
            .insert(Header { key: "ce_id", value: Some("abc") })
            .insert(Header { key: header::ERROR_KIND, value: Some("decode") });
        let headers = info.to_headers(Some(&original));
        assert_eq!(DeadLetterInfo::from_headers(&headers).unwrap(), info);
        assert_eq!(headers.iter().filter(|h| h.key == header::ERROR_KIND).count(), 1, "old header dropped");
        assert!(headers.iter().any(|h| h.key == "ce_id" && h.value == Some(b"abc".as_slice())));
    }

    #[test]
    fn missing_and_bad_headers_are_named() {
        let none = OwnedHeaders::new();
        assert_eq!(DeadLetterInfo::from_headers(&none), Err(DeadLetterHeaderError::Missing(header::TIME)));
        assert!("nonsense".parse::<DeadLetterReason>().is_err());
        for reason in DeadLetterReason::ALL {
            assert_eq!(reason.as_str().parse::<DeadLetterReason>().unwrap(), reason);
        }
    }
}
