//! `list`: the dead letters of a group with their status; `show`: everything about one of them,
//! its event decoded through the registry.

use std::collections::BTreeMap;

use eventline_common::catalog::Catalog;
use eventline_common::kafka::KafkaSettings;
use eventline_common::registry_client::RegistryClient;
use rdkafka::message::{Headers, Message};
use serde::{Deserialize, Serialize};

use super::error::DlqError;
use super::model::{DeadLetter, LetterStatus, OffsetRange};
use super::read::letters;
use super::select::{event_type, DeadLetterTopic};
use crate::commands::tail::decode_value;

/// At most this many bytes of an undecodable value are shown.
pub const HEX_LIMIT: usize = 256;

/// Which letters `list` shows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListQuery {
    pub group: String,
    /// The dead-letter topic when it is not `<group>.dlq`.
    pub dlq_topic: Option<String>,
    /// Only letters of this event type (short or full name).
    pub event_type: Option<String>,
    pub partition: Option<i32>,
    pub from_offset: Option<i64>,
    /// Included.
    pub to_offset: Option<i64>,
}

/// Counts by status and by reason.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ListSummary {
    pub total: usize,
    pub pending: usize,
    pub redriven: usize,
    /// `unknown` for letters without the reason header.
    pub by_reason: BTreeMap<String, usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DlqListing {
    pub group: String,
    pub dlq_topic: String,
    pub letters: Vec<DeadLetter>,
    pub summary: ListSummary,
    /// Records of the marker topic that could not be read (their letters may show `pending`).
    pub unreadable_markers: usize,
}

/// The dead letters of `query.group`, with their redrive status.
pub async fn list(kafka: &KafkaSettings, catalog: &Catalog, query: &ListQuery) -> Result<DlqListing, DlqError> {
    let wanted = query.event_type.as_deref().map(|name| event_type(catalog, name)).transpose()?;
    OffsetRange::check_bounds(query.from_offset, query.to_offset)?;
    let topic = DeadLetterTopic::open(kafka, &query.group, query.dlq_topic.as_deref()).await?;
    let ranges = topic.ranges(query.partition, query.from_offset, query.to_offset)?;
    let (found, unreadable_markers) = letters(kafka, topic.name(), ranges).await?;
    let letters: Vec<DeadLetter> = found
        .into_iter()
        .map(|(letter, _record)| letter)
        .filter(|letter| wanted.is_none() || letter.event_type == wanted)
        .collect();
    Ok(DlqListing {
        group: query.group.clone(),
        dlq_topic: topic.name().to_owned(),
        summary: summarize(&letters),
        letters,
        unreadable_markers,
    })
}

fn summarize(letters: &[DeadLetter]) -> ListSummary {
    let mut summary = ListSummary { total: letters.len(), ..ListSummary::default() };
    for letter in letters {
        match letter.status {
            LetterStatus::Pending => summary.pending += 1,
            LetterStatus::Redriven => summary.redriven += 1,
        }
        let reason = letter.reason.clone().unwrap_or_else(|| "unknown".to_owned());
        *summary.by_reason.entry(reason).or_default() += 1;
    }
    summary
}

/// Which letter `show` shows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShowQuery {
    pub group: String,
    pub dlq_topic: Option<String>,
    pub partition: i32,
    pub offset: i64,
}

/// A record header; `value` is `None` for a header without a value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeaderEntry {
    pub name: String,
    pub value: Option<String>,
}

/// Why a value could not be decoded, and its first bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Undecodable {
    pub reason: String,
    /// The value's size in bytes.
    pub size: usize,
    /// At most [`HEX_LIMIT`] bytes in hex, space-separated.
    pub hex: String,
    pub truncated: bool,
}

/// Everything about one dead letter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetterDetail {
    pub letter: DeadLetter,
    /// Every header, in record order.
    pub headers: Vec<HeaderEntry>,
    /// The event decoded through the registry with its writer schema.
    pub value: Option<serde_json::Value>,
    pub undecodable: Option<Undecodable>,
}

/// One dead letter with its headers and its event decoded as JSON (or why it cannot be).
pub async fn show(
    kafka: &KafkaSettings,
    registry: &RegistryClient,
    query: &ShowQuery,
) -> Result<DeadLetterDetail, DlqError> {
    let topic = DeadLetterTopic::open(kafka, &query.group, query.dlq_topic.as_deref()).await?;
    let ranges = topic.ranges(Some(query.partition), Some(query.offset), Some(query.offset))?;
    let (found, _unreadable) = letters(kafka, topic.name(), ranges).await?;
    let Some((letter, record)) = found.into_iter().next() else {
        return Err(DlqError::NoRecordAt {
            topic: topic.name().to_owned(),
            partition: query.partition,
            offset: query.offset,
        });
    };
    let headers = record
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| HeaderEntry {
                    name: h.key.to_owned(),
                    value: h.value.map(|v| String::from_utf8_lossy(v).into_owned()),
                })
                .collect()
        })
        .unwrap_or_default();
    let (value, undecodable) = match decode_value(registry, record.payload()).await {
        Ok(value) => (Some(value), None),
        Err(reason) => (None, Some(undecodable(reason, record.payload().unwrap_or_default()))),
    };
    Ok(DeadLetterDetail { letter, headers, value, undecodable })
}

fn undecodable(reason: String, bytes: &[u8]) -> Undecodable {
    let shown = &bytes[..bytes.len().min(HEX_LIMIT)];
    let hex: Vec<String> = shown.iter().map(|b| format!("{b:02x}")).collect();
    Undecodable { reason, size: bytes.len(), hex: hex.join(" "), truncated: bytes.len() > HEX_LIMIT }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undecodable_bytes_are_shown_in_hex_up_to_the_limit() {
        let short = undecodable("garbage".into(), b"\x00\x01\xff");
        assert_eq!((short.hex.as_str(), short.size, short.truncated), ("00 01 ff", 3, false));
        let long = undecodable("garbage".into(), &[0xab; HEX_LIMIT + 10]);
        assert_eq!((long.size, long.truncated), (HEX_LIMIT + 10, true));
        assert_eq!(long.hex.split(' ').count(), HEX_LIMIT);
    }
}
