//! The one publishing path every producer shares (HTTP ingest, the outbox relay, `eventline
//! publish`): parse an event as upstream systems send it, validate its data against the schema
//! of its type, derive the key, frame it, and publish it with the idempotent producer.
//!
//! An event from upstream is JSON: `{"type", "id"?, "source"?, "time"?, "subject"?, "data"}`.
//! `type` is the short (`OrderPlaced`) or full (`com.eventline.commerce.OrderPlaced`) name;
//! `id` is a UUID (generated when absent; it is the idempotency key downstream); `time` is
//! RFC 3339 (now when absent); `data` is the event's JSON for its Avro schema.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value as Json;
use uuid::Uuid;

use crate::avro::{self, CodecError};
use crate::avro_json::{self, FieldError};
use crate::contracts::{Contracts, RegisteredEvent};
use crate::envelope::{Envelope, TraceParent};
use crate::kafka::producer::{EventProducer, OutgoingEvent, ProduceError};
use crate::kafka::Position;

/// The most a `source` or `subject` may be, in bytes.
pub const MAX_ATTRIBUTE_BYTES: usize = 1024;

/// Why an event was refused before anything was published.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidEvent {
    #[error("unknown event type `{0}`")]
    UnknownType(String),
    #[error("invalid event: {}", join(.0))]
    Fields(Vec<FieldError>),
}

impl InvalidEvent {
    /// Every problem with its JSON path.
    pub fn errors(&self) -> Vec<FieldError> {
        match self {
            InvalidEvent::UnknownType(name) => {
                vec![FieldError { path: "$.type".into(), message: format!("unknown event type `{name}`") }]
            }
            InvalidEvent::Fields(errors) => errors.clone(),
        }
    }
}

fn join(errors: &[FieldError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// Who is publishing: fills `source` when the event has none and carries the trace.
#[derive(Debug, Clone)]
pub struct Origin {
    pub source: String,
    pub traceparent: Option<TraceParent>,
    pub correlation_id: Option<String>,
}

/// A validated event, framed and ready to publish.
#[derive(Debug, Clone)]
pub struct PreparedEvent {
    pub event_type: String,
    pub topic: String,
    pub key: String,
    pub value: Vec<u8>,
    pub envelope: Envelope,
}

/// Validates `json` (one event as upstream sends it) against the contracts.
pub fn prepare(contracts: &Contracts, json: &Json, origin: &Origin) -> Result<PreparedEvent, InvalidEvent> {
    let mut errors = Vec::new();
    let Json::Object(object) = json else {
        return Err(InvalidEvent::Fields(vec![FieldError {
            path: "$".into(),
            message: "expected an event object".into(),
        }]));
    };
    for key in object.keys() {
        if !matches!(key.as_str(), "type" | "id" | "source" | "time" | "subject" | "data") {
            errors.push(FieldError {
                path: format!("$.{key}"),
                message: "unknown attribute (expected type, id, source, time, subject, data)".into(),
            });
        }
    }
    let event_type = match object.get("type") {
        Some(Json::String(name)) => Some(name.as_str()),
        Some(_) => {
            errors.push(FieldError { path: "$.type".into(), message: "expected the event type as a string".into() });
            None
        }
        None => {
            errors.push(FieldError { path: "$.type".into(), message: "required attribute is missing".into() });
            None
        }
    };
    let id = optional(object.get("id"), "$.id", "a UUID", &mut errors, |s| Uuid::parse_str(s).ok());
    let time = optional(object.get("time"), "$.time", "an RFC 3339 timestamp", &mut errors, |s| {
        DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
    });
    let source = optional(object.get("source"), "$.source", "a non-empty string", &mut errors, bounded);
    let subject = optional(object.get("subject"), "$.subject", "a non-empty string", &mut errors, bounded);

    let registered = match event_type {
        Some(name) => match contracts.event(name) {
            Some(registered) => Some(registered),
            None if errors.is_empty() => return Err(InvalidEvent::UnknownType(name.to_owned())),
            None => {
                errors.push(FieldError { path: "$.type".into(), message: format!("unknown event type `{name}`") });
                None
            }
        },
        None => None,
    };
    let data = match object.get("data") {
        Some(data) => Some(data),
        None => {
            errors.push(FieldError { path: "$.data".into(), message: "required attribute is missing".into() });
            None
        }
    };
    let (Some(registered), Some(data)) = (registered, data) else {
        return Err(InvalidEvent::Fields(errors));
    };
    let value = match avro_json::from_json(&registered.spec.schema, data, "$.data") {
        Ok(value) => Some(value),
        Err(found) => {
            errors.extend(found);
            None
        }
    };
    let (Some(value), true) = (value, errors.is_empty()) else {
        return Err(InvalidEvent::Fields(errors));
    };
    let key = key_of(registered, &value)?;
    let bytes = avro::encode_value(registered.schema_id, &registered.spec.schema, value)
        .map_err(|e| InvalidEvent::Fields(vec![FieldError { path: "$.data".into(), message: codec_message(&e) }]))?;
    Ok(PreparedEvent {
        event_type: registered.spec.name.clone(),
        topic: registered.spec.topic.clone(),
        key,
        value: bytes,
        envelope: Envelope {
            id: id.unwrap_or_else(Uuid::new_v4),
            source: source.unwrap_or_else(|| origin.source.clone()),
            event_type: registered.spec.full_name.clone(),
            time: time.unwrap_or_else(Utc::now),
            subject,
            traceparent: origin.traceparent.map(|t| t.child()),
            correlation_id: origin.correlation_id.clone(),
        },
    })
}

fn bounded(text: &str) -> Option<String> {
    (!text.is_empty() && text.len() <= MAX_ATTRIBUTE_BYTES).then(|| text.to_owned())
}

fn optional<T>(
    json: Option<&Json>,
    path: &str,
    what: &str,
    errors: &mut Vec<FieldError>,
    parse: impl Fn(&str) -> Option<T>,
) -> Option<T> {
    match json {
        None | Some(Json::Null) => None,
        Some(Json::String(text)) => {
            let parsed = parse(text);
            if parsed.is_none() {
                errors.push(FieldError {
                    path: path.into(),
                    message: format!("expected {what}, found `{}`", truncate(text)),
                });
            }
            parsed
        }
        Some(_) => {
            errors.push(FieldError { path: path.into(), message: format!("expected {what}") });
            None
        }
    }
}

fn truncate(text: &str) -> String {
    text.chars().take(64).collect()
}

fn key_of(registered: &RegisteredEvent, value: &apache_avro::types::Value) -> Result<String, InvalidEvent> {
    use apache_avro::types::Value;
    let field = &registered.spec.key_field;
    let path = format!("$.data.{field}");
    let Value::Record(fields) = value else {
        return Err(InvalidEvent::Fields(vec![FieldError { path, message: "the event is not a record".into() }]));
    };
    match fields.iter().find(|(name, _)| name == field).map(|(_, v)| v) {
        Some(Value::String(key)) if !key.is_empty() => Ok(key.clone()),
        Some(Value::Uuid(key)) => Ok(key.to_string()),
        _ => Err(InvalidEvent::Fields(vec![FieldError {
            path,
            message: "the key field must be a non-empty string".into(),
        }])),
    }
}

fn codec_message(error: &CodecError) -> String {
    error.to_string()
}

/// Publishes prepared events; answers only after the broker acknowledged.
#[derive(Clone)]
pub struct Publisher {
    producer: EventProducer,
    contracts: Arc<Contracts>,
}

impl Publisher {
    pub fn new(producer: EventProducer, contracts: Arc<Contracts>) -> Self {
        Self { producer, contracts }
    }

    pub fn contracts(&self) -> &Contracts {
        &self.contracts
    }

    pub fn producer(&self) -> &EventProducer {
        &self.producer
    }

    pub async fn publish(&self, event: &PreparedEvent) -> Result<Position, ProduceError> {
        self.producer
            .send(OutgoingEvent {
                topic: &event.topic,
                key: &event.key,
                value: &event.value,
                envelope: &event.envelope,
            })
            .await
    }

    /// Hands `event` to the producer now (keeping order with events enqueued before it) and
    /// returns the wait for its acknowledgement.
    pub async fn enqueue(
        &self,
        event: &PreparedEvent,
    ) -> Result<impl std::future::Future<Output = Result<Position, ProduceError>> + Send + 'static, ProduceError> {
        self.producer
            .enqueue(OutgoingEvent {
                topic: &event.topic,
                key: &event.key,
                value: &event.value,
                envelope: &event.envelope,
            })
            .await
    }

    /// Publishes several events in order (the producer batches them); one result each, in order.
    pub async fn publish_all(&self, events: &[PreparedEvent]) -> Vec<Result<Position, ProduceError>> {
        let mut pending = Vec::with_capacity(events.len());
        for event in events {
            pending.push(self.enqueue(event).await);
        }
        let mut results = Vec::with_capacity(events.len());
        for enqueued in pending {
            results.push(match enqueued {
                Ok(delivery) => delivery.await,
                Err(error) => Err(error),
            });
        }
        results
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::avro::SchemaId;
    use crate::catalog::Catalog;
    use crate::events::OrderPlaced;
    use serde_json::json;

    fn contracts() -> Contracts {
        Contracts::with_ids(Catalog::embedded().unwrap(), |spec| {
            SchemaId(if spec.name == "OrderPlaced" { 7 } else { 1 })
        })
    }

    fn origin() -> Origin {
        Origin { source: "/ingest/http".into(), traceparent: None, correlation_id: Some("c-1".into()) }
    }

    fn order() -> Json {
        json!({
            "type": "OrderPlaced",
            "id": "0b5c1d9e-6f1a-4a63-9a43-5c2f4f7c0f11",
            "time": "2026-11-23T10:00:00Z",
            "data": {"order_id": "o-1", "customer_id": "c-1", "currency": "EUR", "total_minor": 2500,
                     "lines": [{"sku": "A", "quantity": 2, "unit_price_minor": 1250}],
                     "placed_at": "2026-11-23T10:00:00Z"}
        })
    }

    #[test]
    fn a_valid_event_is_keyed_framed_and_enveloped() {
        let contracts = contracts();
        let event = prepare(&contracts, &order(), &origin()).unwrap();
        assert_eq!((event.topic.as_str(), event.key.as_str()), ("orders", "o-1"));
        assert_eq!(event.envelope.id.to_string(), "0b5c1d9e-6f1a-4a63-9a43-5c2f4f7c0f11");
        assert_eq!(event.envelope.event_type, "com.eventline.commerce.OrderPlaced");
        assert_eq!(event.envelope.source, "/ingest/http");
        assert_eq!(event.envelope.correlation_id.as_deref(), Some("c-1"));
        let framed = avro::unframe(&event.value).unwrap();
        assert_eq!(framed.schema_id, SchemaId(7));
        let schema = &contracts.event("OrderPlaced").unwrap().spec.schema;
        let decoded: OrderPlaced = avro::decode(framed.body, schema, None).unwrap();
        assert_eq!(decoded.total_minor, 2500);
        assert_eq!(decoded.lines[0].quantity, 2);
    }

    #[test]
    fn the_full_type_name_works_and_missing_id_and_time_are_filled() {
        let mut input = order();
        input["type"] = json!("com.eventline.commerce.OrderPlaced");
        input.as_object_mut().unwrap().remove("id");
        input.as_object_mut().unwrap().remove("time");
        let before = Utc::now();
        let event = prepare(&contracts(), &input, &origin()).unwrap();
        assert!(event.envelope.time >= before);
        assert_ne!(event.envelope.id, Uuid::nil());
    }

    #[test]
    fn an_unknown_type_is_its_own_error() {
        let mut input = order();
        input["type"] = json!("OrderTeleported");
        assert_eq!(
            prepare(&contracts(), &input, &origin()).unwrap_err(),
            InvalidEvent::UnknownType("OrderTeleported".into())
        );
    }

    #[test]
    fn envelope_and_data_problems_are_all_reported_with_paths() {
        let mut input = order();
        input["id"] = json!("not-a-uuid");
        input["time"] = json!("noon");
        input["extra"] = json!(1);
        input["data"]["total_minor"] = json!("many");
        input["data"]["order_id"] = json!("");
        let errors = prepare(&contracts(), &input, &origin()).unwrap_err().errors();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["$.extra", "$.id", "$.time", "$.data.total_minor"], "{errors:?}");
    }

    #[test]
    fn an_empty_key_is_refused() {
        let mut input = order();
        input["data"]["order_id"] = json!("");
        let errors = prepare(&contracts(), &input, &origin()).unwrap_err().errors();
        assert_eq!(errors[0].path, "$.data.order_id");
    }

    #[test]
    fn missing_type_and_data_are_reported_together() {
        let errors = prepare(&contracts(), &json!({}), &origin()).unwrap_err().errors();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["$.type", "$.data"]);
        assert!(prepare(&contracts(), &json!("x"), &origin()).is_err());
    }
}
