//! `eventline tail TOPIC`: read a topic from a position and print every event decoded through
//! the schema registry into JSON. Partitions are assigned directly (no consumer group joins and
//! nothing is committed), so tail leaves no group behind. Without `--follow` it stops at the end
//! offsets captured when it started. A record that cannot be decoded is printed with the reason.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};
use clap::Args;
use eventline_common::avro;
use eventline_common::catalog::Catalog;
use eventline_common::config::Section;
use eventline_common::envelope::Envelope;
use eventline_common::kafka::connection::{check_connection, CONNECT_TIMEOUT};
use eventline_common::kafka::KafkaSettings;
use eventline_common::registry_client::{RegistryClient, SchemaRegistrySettings};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use super::publish::OutputFormat;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The client id tail's consumer uses; it never joins a group or commits.
const TAIL_GROUP_PREFIX: &str = "eventline-tail";

#[derive(Debug, Args)]
pub struct TailArgs {
    /// The topic to read.
    pub topic: String,
    /// `earliest`, `latest`, or an RFC 3339 date-time such as `2026-11-23T10:00:00Z`.
    #[arg(long, default_value = "earliest")]
    pub from: String,
    /// Keep waiting for new events until Ctrl-C (otherwise stop at the end offsets seen at start).
    #[arg(long)]
    pub follow: bool,
    /// Only events of this type (short name `OrderPlaced` or full name).
    #[arg(long = "type")]
    pub event_type: Option<String>,
    /// Only events with this key.
    #[arg(long)]
    pub key: Option<String>,
    /// Stop after this many printed events.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Print the CloudEvents headers too.
    #[arg(long)]
    pub headers: bool,
    /// `text` (default) or `json` (one object per line).
    #[arg(long, default_value = "text")]
    pub output: OutputFormat,
}

/// Where reading starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    Earliest,
    Latest,
    Time(DateTime<Utc>),
}

impl StartAt {
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        match text {
            "earliest" => Ok(Self::Earliest),
            "latest" => Ok(Self::Latest),
            _ => DateTime::parse_from_rfc3339(text).map(|time| Self::Time(time.with_timezone(&Utc))).map_err(|e| {
                anyhow::anyhow!(
                    "--from `{text}` is neither `earliest`, `latest` nor an RFC 3339 date-time \
                         like 2026-11-23T10:00:00Z ({e})"
                )
            }),
        }
    }
}

/// What to read and which records to keep.
#[derive(Debug, Clone)]
pub struct TailOptions {
    pub from: StartAt,
    pub follow: bool,
    /// The full name of the wanted event type.
    pub event_type: Option<String>,
    pub key: Option<String>,
    pub limit: Option<usize>,
    pub headers: bool,
}

/// One record as printed.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TailRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub timestamp: Option<String>,
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    pub id: Option<String>,
    pub value: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    /// Why the record could not be decoded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The full name of an event type given by short or full name.
pub fn resolve_event_type(catalog: &Catalog, name: &str) -> anyhow::Result<String> {
    catalog
        .event(name)
        .map(|spec| spec.full_name.clone())
        .ok_or_else(|| anyhow::anyhow!("unknown event type `{name}` (`eventline schemas list` shows them)"))
}

/// Reads `topic` and hands every kept record to `emit`; returns how many were emitted. Stops at
/// the captured end offsets (unless `follow`), at `limit`, or when `stop` completes.
pub async fn tail(
    kafka: &KafkaSettings,
    registry: &RegistryClient,
    topic: &str,
    options: &TailOptions,
    stop: impl Future<Output = ()>,
    mut emit: impl FnMut(TailRecord) -> anyhow::Result<()>,
) -> anyhow::Result<usize> {
    let consumer: StreamConsumer = kafka
        .client_config()
        .set("group.id", format!("{TAIL_GROUP_PREFIX}-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", if options.follow { "false" } else { "true" })
        .create()
        .context("cannot create the Kafka consumer")?;
    let (assignment, mut remaining) = plan(&consumer, topic, options).await?;
    if !options.follow && remaining.is_empty() {
        return Ok(0);
    }
    consumer.assign(&assignment).context("cannot assign the partitions")?;
    let mut emitted = 0usize;
    tokio::pin!(stop);
    loop {
        if options.limit.is_some_and(|limit| emitted >= limit) {
            break;
        }
        let message = tokio::select! {
            biased;
            () = &mut stop => break,
            message = consumer.recv() => message,
        };
        let message = match message {
            Ok(message) => message,
            Err(KafkaError::PartitionEOF(partition)) => {
                remaining.remove(&partition);
                if remaining.is_empty() {
                    break;
                }
                continue;
            }
            Err(error) => return Err(error).context("cannot read from Kafka"),
        };
        if !options.follow && !remaining.contains(&message.partition()) {
            continue;
        }
        if let Some(record) = decode(registry, &message, options).await {
            emit(record)?;
            emitted += 1;
        }
    }
    Ok(emitted)
}

/// The start offset of every partition, and (without `follow`) the partitions with events
/// between start and the end captured now.
async fn plan(
    consumer: &StreamConsumer,
    topic: &str,
    options: &TailOptions,
) -> anyhow::Result<(TopicPartitionList, BTreeSet<i32>)> {
    let metadata = consumer.fetch_metadata(Some(topic), REQUEST_TIMEOUT).context("cannot fetch metadata")?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .filter(|p: &Vec<i32>| !p.is_empty())
        .ok_or_else(|| anyhow::anyhow!("topic `{topic}` does not exist"))?;
    let mut marks = BTreeMap::new();
    for partition in &partitions {
        let watermarks = consumer
            .fetch_watermarks(topic, *partition, REQUEST_TIMEOUT)
            .with_context(|| format!("cannot read the offsets of {topic}/{partition}"))?;
        marks.insert(*partition, watermarks);
    }
    let by_time = match options.from {
        StartAt::Time(time) => {
            let mut query = TopicPartitionList::new();
            for partition in &partitions {
                query.add_partition_offset(topic, *partition, Offset::Offset(time.timestamp_millis()))?;
            }
            let found =
                consumer.offsets_for_times(query, REQUEST_TIMEOUT).context("cannot look up offsets for times")?;
            found.elements().iter().map(|e| (e.partition(), e.offset())).collect::<BTreeMap<_, _>>()
        }
        _ => BTreeMap::new(),
    };
    let mut assignment = TopicPartitionList::new();
    let mut remaining = BTreeSet::new();
    for (partition, (low, high)) in marks {
        let start = match options.from {
            StartAt::Earliest => low,
            StartAt::Latest => high,
            StartAt::Time(_) => match by_time.get(&partition) {
                Some(Offset::Offset(offset)) => (*offset).clamp(low, high),
                _ => high,
            },
        };
        assignment.add_partition_offset(topic, partition, Offset::Offset(start))?;
        if start < high {
            remaining.insert(partition);
        }
    }
    Ok((assignment, remaining))
}

/// The printed record, or `None` when a filter drops it.
async fn decode(registry: &RegistryClient, message: &BorrowedMessage<'_>, options: &TailOptions) -> Option<TailRecord> {
    if let StartAt::Time(from) = options.from {
        // offsets-for-times may land early (brokers answer per batch); keep exactly those at/after.
        if message.timestamp().to_millis().is_some_and(|ms| ms < from.timestamp_millis()) {
            return None;
        }
    }
    let key = message.key().map(|k| String::from_utf8_lossy(k).into_owned());
    if options.key.is_some() && options.key != key {
        return None;
    }
    let envelope = message.headers().map(Envelope::from_headers);
    let event_type = match &envelope {
        Some(Ok(envelope)) => Some(envelope.event_type.clone()),
        _ => None,
    };
    if options.event_type.is_some() && options.event_type != event_type {
        return None;
    }
    let headers = options.headers.then(|| {
        message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|h| {
                        (h.key.to_owned(), h.value.map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default())
                    })
                    .collect()
            })
            .unwrap_or_default()
    });
    let timestamp = message
        .timestamp()
        .to_millis()
        .and_then(DateTime::<Utc>::from_timestamp_millis)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true));
    let mut record = TailRecord {
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
        key,
        timestamp,
        event_type,
        id: None,
        value: None,
        headers,
        error: None,
    };
    match envelope {
        Some(Ok(envelope)) => record.id = Some(envelope.id.to_string()),
        Some(Err(e)) => record.error = Some(format!("bad CloudEvents headers: {e}")),
        None => record.error = Some("no CloudEvents headers".to_owned()),
    }
    match decode_value(registry, message.payload()).await {
        Ok(value) => record.value = Some(value),
        Err(reason) => {
            record.error = Some(match record.error.take() {
                Some(first) => format!("{first}; {reason}"),
                None => reason,
            })
        }
    }
    Some(record)
}

/// A record's value decoded through the registry with its writer schema, as JSON; or why it
/// cannot be (a tombstone, not framed, an unknown schema id, bytes that do not fit the schema).
pub async fn decode_value(registry: &RegistryClient, payload: Option<&[u8]>) -> Result<serde_json::Value, String> {
    let payload = payload.ok_or_else(|| "no value (a tombstone)".to_owned())?;
    let framed = avro::unframe(payload).map_err(|e| format!("not a framed Avro value: {e}"))?;
    let writer = registry
        .schema_by_id(framed.schema_id)
        .await
        .map_err(|e| format!("cannot get schema {}: {e}", framed.schema_id))?;
    let value = avro::decode_value(framed.body, &writer, None).map_err(|e| format!("cannot decode: {e}"))?;
    serde_json::Value::try_from(value).map_err(|e| format!("cannot convert to JSON: {e}"))
}

/// The compact human line of one record.
pub fn human_line(record: &TailRecord) -> String {
    let mut line = format!(
        "{}/{}@{} {} key={} {}",
        record.topic,
        record.partition,
        record.offset,
        record.timestamp.as_deref().unwrap_or("-"),
        record.key.as_deref().unwrap_or("-"),
        record.event_type.as_deref().map(short_name).unwrap_or("-"),
    );
    if let Some(value) = &record.value {
        line.push(' ');
        line.push_str(&value.to_string());
    }
    if let Some(error) = &record.error {
        line.push_str(&format!(" UNDECODABLE: {error}"));
    }
    if let Some(headers) = &record.headers {
        for (name, value) in headers {
            line.push_str(&format!("\n    {name}: {value}"));
        }
    }
    line
}

/// `OrderPlaced` for `com.eventline.commerce.OrderPlaced`.
pub fn short_name(full: &str) -> &str {
    full.rsplit('.').next().unwrap_or(full)
}

pub async fn run(config_file: Option<&Path>, args: TailArgs) -> anyhow::Result<()> {
    let from = StartAt::parse(&args.from)?;
    let catalog = Catalog::embedded().context("the embedded catalog is invalid")?;
    let event_type = args.event_type.as_deref().map(|name| resolve_event_type(&catalog, name)).transpose()?;
    let source = crate::services::config(config_file)?;
    let kafka: KafkaSettings = source.section(Section::Kafka)?;
    let registry: SchemaRegistrySettings = source.section(Section::SchemaRegistry)?;
    let client = RegistryClient::new(&registry)?;
    let options =
        TailOptions { from, follow: args.follow, event_type, key: args.key, limit: args.limit, headers: args.headers };
    check_connection(&kafka, CONNECT_TIMEOUT).await?;
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let output = args.output;
    tail(&kafka, &client, &args.topic, &options, stop, |record| {
        match output {
            OutputFormat::Json => println!("{}", serde_json::to_string(&record)?),
            OutputFormat::Text => println!("{}", human_line(&record)),
        }
        Ok(())
    })
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_accepts_keywords_and_rfc3339() {
        assert_eq!(StartAt::parse("earliest").ok(), Some(StartAt::Earliest));
        assert_eq!(StartAt::parse("latest").ok(), Some(StartAt::Latest));
        assert!(matches!(StartAt::parse("2026-11-23T10:00:00Z"), Ok(StartAt::Time(_))));
        let error = StartAt::parse("yesterday").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("RFC 3339"), "{error}");
    }
}
