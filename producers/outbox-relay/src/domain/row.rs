//! One outbox row, turned into an event through the shared publishing path.
//!
//! A row becomes the JSON event `{type, id, source, time, subject, data}` that
//! [`eventline_common::publish::prepare`] validates: `event_type` → `type`, `event_id` → `id`,
//! `occurred_at` → `time`, `payload` → `data`; `source` and `subject` when set. Problems are
//! reported with the row's column names (`payload.total_minor`, not `$.data.total_minor`), since
//! that is what an operator looking at the table sees.
//!
//! The relay orders by `aggregate_id` and Kafka orders by the key, which `prepare` takes from the
//! catalog's key field of the data; a row whose `aggregate_id` differs from that key would get
//! its ordering from one and its partition from the other, so it is refused.

use chrono::{DateTime, SecondsFormat, Utc};
use eventline_common::avro_json::FieldError;
use eventline_common::contracts::Contracts;
use eventline_common::envelope::TraceParent;
use eventline_common::publish::{self, InvalidEvent, Origin, PreparedEvent};
use serde_json::{Map, Value as Json};

/// An unpublished row as the relay reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    pub id: i64,
    pub event_id: String,
    pub event_type: String,
    pub aggregate_id: String,
    /// The `payload` column as JSON text.
    pub payload: String,
    pub source: Option<String>,
    pub subject: Option<String>,
    pub traceparent: Option<String>,
    pub correlation_id: Option<String>,
    pub occurred_at: DateTime<Utc>,
    pub attempts: i32,
}

/// Why a row can never be published. Its text goes to the row's `last_error`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RowError {
    #[error("payload: not JSON ({0})")]
    Payload(String),
    #[error("{}", describe(.0))]
    Invalid(InvalidEvent),
    #[error("aggregate_id `{aggregate_id}` differs from the event's key payload.{key_field} = `{key}`; they must be equal, since the relay keeps order per aggregate_id and Kafka per key")]
    KeyMismatch { aggregate_id: String, key_field: String, key: String },
}

impl OutboxRow {
    /// The row as an upstream event in the shared JSON form.
    pub fn to_event_json(&self) -> Result<Json, RowError> {
        let data: Json = serde_json::from_str(&self.payload).map_err(|e| RowError::Payload(e.to_string()))?;
        let mut event = Map::new();
        event.insert("type".into(), Json::String(self.event_type.clone()));
        event.insert("id".into(), Json::String(self.event_id.clone()));
        event.insert("time".into(), Json::String(self.occurred_at.to_rfc3339_opts(SecondsFormat::AutoSi, true)));
        if let Some(source) = &self.source {
            event.insert("source".into(), Json::String(source.clone()));
        }
        if let Some(subject) = &self.subject {
            event.insert("subject".into(), Json::String(subject.clone()));
        }
        event.insert("data".into(), data);
        Ok(Json::Object(event))
    }

    /// Where the event comes from: the row's trace when it carries a valid `traceparent` (a new
    /// trace otherwise, as W3C Trace Context prescribes for a malformed one), its correlation id,
    /// and `default_source` for rows without a `source`.
    pub fn origin(&self, default_source: &str) -> Origin {
        let traceparent = self
            .traceparent
            .as_deref()
            .and_then(|text| TraceParent::parse(text).ok())
            .unwrap_or_else(TraceParent::new_root);
        Origin {
            source: default_source.to_owned(),
            traceparent: Some(traceparent),
            correlation_id: self.correlation_id.clone(),
        }
    }

    /// Validates the row against the contracts: the event ready to publish, or why it never will be.
    pub fn prepare(&self, contracts: &Contracts, default_source: &str) -> Result<PreparedEvent, RowError> {
        let json = self.to_event_json()?;
        let prepared = publish::prepare(contracts, &json, &self.origin(default_source)).map_err(RowError::Invalid)?;
        if prepared.key != self.aggregate_id {
            let key_field = contracts.event(&self.event_type).map(|e| e.spec.key_field.clone()).unwrap_or_default();
            return Err(RowError::KeyMismatch {
                aggregate_id: self.aggregate_id.clone(),
                key_field,
                key: prepared.key,
            });
        }
        Ok(prepared)
    }
}

/// Every problem, `; `-separated, with column names for paths.
fn describe(invalid: &InvalidEvent) -> String {
    invalid.errors().iter().map(column_path).collect::<Vec<_>>().join("; ")
}

fn column_path(error: &FieldError) -> String {
    let path = error.path.as_str();
    let column = [
        ("$.data", "payload"),
        ("$.type", "event_type"),
        ("$.id", "event_id"),
        ("$.time", "occurred_at"),
        ("$.source", "source"),
        ("$.subject", "subject"),
    ]
    .iter()
    .find_map(|(prefix, column)| path.strip_prefix(prefix).map(|rest| format!("{column}{rest}")))
    .unwrap_or_else(|| path.to_owned());
    format!("{column}: {}", error.message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventline_common::avro::SchemaId;
    use eventline_common::catalog::Catalog;
    use serde_json::json;

    fn contracts() -> Contracts {
        Contracts::with_ids(Catalog::embedded().unwrap(), |_| SchemaId(3))
    }

    fn row(payload: Json) -> OutboxRow {
        OutboxRow {
            id: 7,
            event_id: "5a0e5f57-4f3b-4c55-9d0e-2b6a1f0c9e01".into(),
            event_type: "OrderShipped".into(),
            aggregate_id: "o-1".into(),
            payload: payload.to_string(),
            source: None,
            subject: None,
            traceparent: None,
            correlation_id: None,
            occurred_at: DateTime::parse_from_rfc3339("2026-11-23T10:00:00.123456Z").unwrap().with_timezone(&Utc),
            attempts: 0,
        }
    }

    fn shipped() -> Json {
        json!({"order_id": "o-1", "carrier": "DHL", "shipped_at": 1_795_428_000_000_i64})
    }

    #[test]
    fn a_row_becomes_an_event_with_its_id_time_and_key() {
        let event = row(shipped()).prepare(&contracts(), "/outbox/shop").unwrap();
        assert_eq!((event.topic.as_str(), event.key.as_str()), ("orders", "o-1"));
        assert_eq!(event.envelope.id.to_string(), "5a0e5f57-4f3b-4c55-9d0e-2b6a1f0c9e01");
        assert_eq!(event.envelope.source, "/outbox/shop");
        assert_eq!(event.envelope.time.timestamp_micros() % 1_000_000, 123_456);
        assert!(event.envelope.traceparent.is_some());
    }

    #[test]
    fn the_rows_own_source_subject_trace_and_correlation_win() {
        let mut r = row(shipped());
        r.source = Some("urn:shop:checkout".into());
        r.subject = Some("parcel-9".into());
        r.traceparent = Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into());
        r.correlation_id = Some("req-42".into());
        let event = r.prepare(&contracts(), "/outbox/shop").unwrap();
        assert_eq!(event.envelope.source, "urn:shop:checkout");
        assert_eq!(event.envelope.subject.as_deref(), Some("parcel-9"));
        assert_eq!(event.envelope.traceparent.unwrap().trace_id, 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736);
        assert_eq!(event.envelope.correlation_id.as_deref(), Some("req-42"));
    }

    #[test]
    fn problems_name_the_columns_an_operator_sees() {
        let mut r = row(json!({"order_id": "o-1", "carrier": 5, "shipped_at": "soon"}));
        r.event_id = "nope".into();
        let text = r.prepare(&contracts(), "/s").unwrap_err().to_string();
        assert!(text.contains("event_id: expected a UUID"), "{text}");
        assert!(text.contains("payload.carrier: "), "{text}");
        assert!(text.contains("payload.shipped_at: "), "{text}");

        let mut r = row(shipped());
        r.event_type = "OrderTeleported".into();
        let text = r.prepare(&contracts(), "/s").unwrap_err().to_string();
        assert_eq!(text, "event_type: unknown event type `OrderTeleported`");
    }

    #[test]
    fn an_aggregate_id_that_is_not_the_key_is_refused() {
        let mut r = row(shipped());
        r.aggregate_id = "order-1".into();
        let error = r.prepare(&contracts(), "/s").unwrap_err();
        assert!(matches!(error, RowError::KeyMismatch { ref key, .. } if key == "o-1"), "{error}");
        assert!(error.to_string().contains("payload.order_id"), "{error}");
    }

    #[test]
    fn a_payload_that_is_not_an_object_is_reported() {
        let text = row(json!([1, 2])).prepare(&contracts(), "/s").unwrap_err().to_string();
        assert!(text.starts_with("payload"), "{text}");
    }
}
