//! From a Kafka record to a [`Delivered`] event: the CloudEvents envelope, the event type (and
//! whether this consumer wants it), the key, the Confluent frame, the writer schema from the
//! registry, and the value resolved into the consumer's reader schema.
//!
//! A record that can never be read is [`Decoded::Poison`] (dead-lettered); a registry that
//! cannot be reached right now is an `Err` (the partition backs off and tries again).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use apache_avro::Schema;
use chrono::{DateTime, Utc};
use rdkafka::message::{Message, OwnedHeaders, OwnedMessage};

use super::dead_letter::DeadLetterReason;
use super::handler::Delivered;
use crate::avro::{self, SchemaId};
use crate::catalog::Catalog;
use crate::envelope::{header, Envelope, EnvelopeError, TraceParent};
use crate::registry_client::{RegistryClient, RegistryClientError};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecoderError {
    #[error("event type {0} is not in the catalog and no reader schema was given for it")]
    UnknownEventType(String),
}

/// What became of one record.
#[derive(Debug)]
pub(crate) enum Decoded {
    Event(Box<Delivered>),
    /// An event type this consumer does not handle.
    Skip,
    Poison {
        reason: DeadLetterReason,
        error: String,
    },
}

fn poison(reason: DeadLetterReason, error: impl std::fmt::Display) -> Decoded {
    Decoded::Poison { reason, error: error.to_string() }
}

pub(crate) struct Decoder {
    registry: RegistryClient,
    catalog: Catalog,
    /// Short names of the wanted event types; `None`: all.
    wanted: Option<BTreeSet<String>>,
    /// Reader schemas given by the consumer, by short name; the catalog's otherwise.
    readers: BTreeMap<String, Arc<Schema>>,
    /// Whether a writer schema is the reader schema of its event type (no resolution needed).
    same_schema: Mutex<HashMap<SchemaId, (String, bool)>>,
    group: Arc<str>,
}

impl Decoder {
    pub(crate) fn new(
        registry: RegistryClient,
        catalog: Catalog,
        event_types: &[String],
        readers: BTreeMap<String, Arc<Schema>>,
        group: Arc<str>,
    ) -> Result<Self, DecoderError> {
        let given: BTreeSet<String> = readers.keys().cloned().collect();
        let short = |name: &str| -> Result<String, DecoderError> {
            match catalog.event(name) {
                Some(spec) => Ok(spec.name.clone()),
                None if given.contains(name) => Ok(name.to_owned()),
                None => Err(DecoderError::UnknownEventType(name.to_owned())),
            }
        };
        let wanted = if event_types.is_empty() {
            None
        } else {
            Some(event_types.iter().map(|name| short(name)).collect::<Result<_, _>>()?)
        };
        let readers =
            readers.into_iter().map(|(name, schema)| Ok((short(&name)?, schema))).collect::<Result<_, _>>()?;
        Ok(Self { registry, catalog, wanted, readers, same_schema: Mutex::default(), group })
    }

    pub(crate) async fn decode(
        &self,
        message: &OwnedMessage,
        topic: &Arc<str>,
    ) -> Result<Decoded, RegistryClientError> {
        let empty = OwnedHeaders::new();
        let envelope = match Envelope::from_headers(message.headers().unwrap_or(&empty)) {
            Ok(envelope) => envelope,
            Err(EnvelopeError::Missing(name)) if message.headers().is_none() => {
                return Ok(poison(DeadLetterReason::Decode, format!("the record has no headers; {name} is required")))
            }
            Err(error) => {
                return Ok(poison(DeadLetterReason::Decode, format!("cannot read the CloudEvents envelope: {error}")))
            }
        };
        let event_type = self.short_name(&envelope.event_type);
        if self.wanted.as_ref().is_some_and(|wanted| !wanted.contains(&event_type)) {
            return Ok(Decoded::Skip);
        }
        let key = match message.key().map(|key| String::from_utf8(key.to_vec())) {
            None => None,
            Some(Ok(key)) => Some(key),
            Some(Err(_)) => return Ok(poison(DeadLetterReason::Decode, "the record key is not UTF-8")),
        };
        let Some(payload) = message.payload() else {
            return Ok(poison(DeadLetterReason::Decode, "the record has no value"));
        };
        let framed = match avro::unframe(payload) {
            Ok(framed) => framed,
            Err(error) => return Ok(poison(DeadLetterReason::Decode, error)),
        };
        let writer = match self.registry.schema_by_id(framed.schema_id).await {
            Ok(writer) => writer,
            Err(error @ RegistryClientError::UnknownSchemaId(_)) => {
                return Ok(poison(DeadLetterReason::UnknownSchema, error))
            }
            Err(error @ RegistryClientError::InvalidSchema { .. }) => {
                return Ok(poison(DeadLetterReason::Decode, error))
            }
            Err(error) => return Err(error),
        };
        let reader = self
            .readers
            .get(&event_type)
            .cloned()
            .or_else(|| self.catalog.event(&event_type).map(|spec| spec.schema.clone()));
        let resolve_into = match &reader {
            Some(reader) if !self.is_same(framed.schema_id, &event_type, &writer, reader) => Some(reader.as_ref()),
            _ => None,
        };
        let value = match avro::decode_value(framed.body, &writer, resolve_into) {
            Ok(value) => value,
            Err(error) => return Ok(poison(DeadLetterReason::Decode, error)),
        };
        let trace = envelope.traceparent.map_or_else(TraceParent::new_root, |parent| parent.child());
        let span = tracing::info_span!(
            "consume",
            group = %self.group,
            topic = %topic,
            partition = message.partition(),
            offset = message.offset(),
            event_type = %event_type,
            event_id = %envelope.id,
            trace_id = %format!("{:032x}", trace.trace_id),
            span_id = %format!("{:016x}", trace.span_id),
            parent_span_id = %envelope.traceparent.map(|p| format!("{:016x}", p.span_id)).unwrap_or_default(),
        );
        Ok(Decoded::Event(Box::new(Delivered {
            topic: topic.clone(),
            partition: message.partition(),
            offset: message.offset(),
            key,
            timestamp: message.timestamp().to_millis().and_then(DateTime::<Utc>::from_timestamp_millis),
            envelope,
            event_type,
            value,
            trace,
            span,
        })))
    }

    /// `OrderPlaced` for `com.eventline.commerce.OrderPlaced` (or the last dotted segment of a
    /// type the catalog does not know).
    fn short_name(&self, event_type: &str) -> String {
        match self.catalog.event(event_type) {
            Some(spec) => spec.name.clone(),
            None => event_type.rsplit('.').next().unwrap_or(event_type).to_owned(),
        }
    }

    fn is_same(&self, id: SchemaId, event_type: &str, writer: &Schema, reader: &Schema) -> bool {
        let cached = self.same_schema.lock().ok().and_then(|cache| match cache.get(&id) {
            Some((for_type, same)) if for_type == event_type => Some(*same),
            _ => None,
        });
        if let Some(same) = cached {
            return same;
        }
        let same = writer.canonical_form() == reader.canonical_form();
        if let Ok(mut cache) = self.same_schema.lock() {
            cache.insert(id, (event_type.to_owned(), same));
        }
        same
    }
}

/// The `ce_type` header of a record, for logs about records that could not be decoded.
pub(crate) fn raw_event_type(message: &OwnedMessage) -> Option<String> {
    use rdkafka::message::Headers as _;
    let headers = message.headers()?;
    headers
        .iter()
        .find(|h| h.key == header::TYPE)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry_client::SchemaRegistrySettings;

    fn decoder(event_types: &[&str]) -> Result<Decoder, DecoderError> {
        let registry = RegistryClient::new(&SchemaRegistrySettings::default()).unwrap();
        let types: Vec<String> = event_types.iter().map(|t| (*t).to_owned()).collect();
        Decoder::new(registry, Catalog::embedded().unwrap(), &types, BTreeMap::new(), Arc::from("g"))
    }

    #[test]
    fn wanted_types_must_be_known_and_full_names_are_accepted() {
        let decoder = decoder(&["OrderPlaced", "com.eventline.commerce.OrderCancelled"]).unwrap();
        let wanted = decoder.wanted.unwrap();
        assert_eq!(wanted.into_iter().collect::<Vec<_>>(), ["OrderCancelled", "OrderPlaced"]);
        assert_eq!(self::decoder(&["OrderPlacd"]).err(), Some(DecoderError::UnknownEventType("OrderPlacd".into())));
    }

    #[tokio::test]
    async fn records_without_an_envelope_or_with_bad_bytes_are_poison_without_asking_the_registry() {
        let decoder = decoder(&[]).unwrap();
        let topic: Arc<str> = Arc::from("orders");
        let bare = OwnedMessage::new(
            Some(vec![0, 0, 0, 0, 1]),
            None,
            "orders".into(),
            rdkafka::Timestamp::NotAvailable,
            0,
            3,
            None,
        );
        let Decoded::Poison { reason, error } = decoder.decode(&bare, &topic).await.unwrap() else {
            panic!("not poison")
        };
        assert_eq!(reason, DeadLetterReason::Decode);
        assert!(error.contains("no headers"), "{error}");

        let envelope = Envelope {
            id: uuid::Uuid::new_v4(),
            source: "/t".into(),
            event_type: "com.eventline.commerce.OrderPlaced".into(),
            time: Utc::now(),
            subject: None,
            traceparent: None,
            correlation_id: None,
        };
        let garbage = OwnedMessage::new(
            Some(b"\x07garbage".to_vec()),
            Some(b"k".to_vec()),
            "orders".into(),
            rdkafka::Timestamp::NotAvailable,
            0,
            4,
            Some(envelope.to_headers()),
        );
        let Decoded::Poison { reason, error } = decoder.decode(&garbage, &topic).await.unwrap() else {
            panic!("not poison")
        };
        assert_eq!(reason, DeadLetterReason::Decode);
        assert!(error.contains("magic byte"), "{error}");
        assert_eq!(raw_event_type(&garbage).as_deref(), Some("com.eventline.commerce.OrderPlaced"));

        let only_cancellations = self::decoder(&["OrderCancelled"]).unwrap();
        assert!(
            matches!(only_cancellations.decode(&garbage, &topic).await.unwrap(), Decoded::Skip),
            "skipped before decoding"
        );
    }
}
