//! `redrive`: send dead letters back, to the group's retry topic (only that group sees them) or
//! to their original topic (every group reading it does), and record each one sent.
//!
//! A redriven record is the dead letter's key, value and headers, minus the `eventline_dlq_*`
//! headers, plus `eventline_redriven_from = <dlq topic>:<partition>:<offset>`. The bytes are
//! unchanged, so the event id is too: a consumer that applied the event before drops it. Each
//! send is awaited (idempotent producer, `acks=all`); then a marker goes to
//! `<dlq topic>.redrives`, which is how `list` shows the status and how a re-run skips what was
//! sent. A crash between the two sends that record again on the next run (harmless, see above).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chrono::Utc;
use eventline_common::catalog::Catalog;
use eventline_common::kafka::admin::{ensure_topics, TopicRequest};
use eventline_common::kafka::consumer::dead_letter::header;
use eventline_common::kafka::consumer::RETRY_SUFFIX;
use eventline_common::kafka::producer::{EventProducer, OutgoingRecord, ProduceError, ProducerSettings};
use eventline_common::kafka::{KafkaSettings, Position};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::error::DlqError;
use super::model::{DeadLetter, LetterId, LetterStatus, OffsetRange, RedriveMarker};
use super::read::{letters, marker_topic, partition_counts};
use super::select::{event_type, DeadLetterTopic};

/// How often progress is reported (and once after the first record).
pub const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// How long one send may wait for the broker's acknowledgement.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Where redriven events go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// The group's retry topic: only the failing group sees the event again.
    #[default]
    Retry,
    /// The topic the event failed on: every group reading it sees it again.
    Original,
}

/// Which dead letters to redrive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    All,
    /// Offsets of one partition: the only one, or `partition`.
    Offsets {
        range: OffsetRange,
        #[serde(default)]
        partition: Option<i32>,
    },
    /// Letters of one event type (short or full name).
    EventType(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedriveRequest {
    pub group: String,
    /// The dead-letter topic when it is not `<group>.dlq`.
    #[serde(default)]
    pub dlq_topic: Option<String>,
    pub select: Selection,
    #[serde(default)]
    pub to: Target,
    /// The group's retry topic when it is not `<group>.retry`.
    #[serde(default)]
    pub retry_topic: Option<String>,
    /// Also send letters that were redriven before.
    #[serde(default)]
    pub again: bool,
    /// Send; otherwise only say what would be sent where.
    #[serde(default)]
    pub execute: bool,
}

/// One letter and where it goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedRedrive {
    pub letter: LetterId,
    pub event_type: Option<String>,
    pub event_id: Option<String>,
    pub key: Option<String>,
    pub target_topic: String,
    /// The letter's original partition (where its key lives); `None`: chosen by key.
    pub target_partition: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedRedrive {
    pub letter: LetterId,
    pub target_topic: String,
    pub error: String,
}

/// How far a redrive is, since it started sending.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RedriveProgress {
    pub sent: usize,
    pub failed: usize,
    pub total: usize,
    pub elapsed_seconds: f64,
    pub per_second: f64,
    /// At the current rate; `None` before anything was sent.
    pub remaining_seconds: Option<f64>,
}

/// What a redrive did, or in a dry run would do.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RedriveOutcome {
    pub group: String,
    pub dlq_topic: String,
    pub executed: bool,
    /// The chosen letters to send, in order (everything a dry run would send).
    pub planned: Vec<PlannedRedrive>,
    /// Chosen letters left alone because they were redriven before (see `again`).
    pub skipped: Vec<LetterId>,
    /// What was sent, as recorded.
    pub sent: Vec<RedriveMarker>,
    pub sent_per_topic: BTreeMap<String, usize>,
    pub failed: Vec<FailedRedrive>,
    /// Sent, but the marker could not be written: a re-run sends these again (consumers drop
    /// them by event id).
    pub unrecorded: Vec<LetterId>,
    /// Stopped by the cancellation token after the record in flight; a re-run continues.
    pub interrupted: bool,
    pub elapsed_seconds: f64,
}

/// Plans the redrive `request` asks for, checks every target, and with `execute` sends the
/// records one at a time until done or `stop` is cancelled. `progress` hears after the first
/// record, then at most every [`PROGRESS_EVERY`], then at the end.
pub async fn redrive(
    kafka: &KafkaSettings,
    catalog: &Catalog,
    request: &RedriveRequest,
    mut progress: impl FnMut(&RedriveProgress),
    stop: CancellationToken,
) -> Result<RedriveOutcome, DlqError> {
    let started = Instant::now();
    let wanted = match &request.select {
        Selection::EventType(name) => Some(event_type(catalog, name)?),
        _ => None,
    };
    let topic = DeadLetterTopic::open(kafka, &request.group, request.dlq_topic.as_deref()).await?;
    let ranges = match &request.select {
        Selection::Offsets { range, partition } => topic.ranges(*partition, Some(range.first), range.last)?,
        Selection::All | Selection::EventType(_) => topic.ranges(None, None, None)?,
    };
    let (found, _unreadable) = letters(kafka, topic.name(), ranges).await?;
    let (skipped, chosen): (Vec<_>, Vec<_>) = found
        .into_iter()
        .filter(|(letter, _)| wanted.is_none() || letter.event_type == wanted)
        .partition(|(letter, _)| !request.again && letter.status == LetterStatus::Redriven);
    let planned = plan(kafka, request, chosen.iter().map(|(letter, _)| letter)).await?;
    let mut outcome = RedriveOutcome {
        group: request.group.clone(),
        dlq_topic: topic.name().to_owned(),
        executed: request.execute,
        skipped: skipped.into_iter().map(|(letter, _)| letter.id).collect(),
        planned,
        ..RedriveOutcome::default()
    };
    if request.execute && !outcome.planned.is_empty() {
        let records: Vec<OwnedMessage> = chosen.into_iter().map(|(_, record)| record).collect();
        send_all(kafka, &topic, &records, &mut outcome, &mut progress, &stop).await?;
    }
    outcome.elapsed_seconds = started.elapsed().as_secs_f64();
    Ok(outcome)
}

/// Where each letter goes; refuses (naming the letter or topic) when a target cannot be had.
async fn plan(
    kafka: &KafkaSettings,
    request: &RedriveRequest,
    letters: impl Iterator<Item = &DeadLetter>,
) -> Result<Vec<PlannedRedrive>, DlqError> {
    let retry_topic = request.retry_topic.clone().unwrap_or_else(|| format!("{}{RETRY_SUFFIX}", request.group));
    let mut planned = Vec::new();
    for letter in letters {
        let target_topic = match request.to {
            Target::Retry => retry_topic.clone(),
            Target::Original => letter.original_topic.clone().ok_or_else(|| DlqError::NoOriginalTopic {
                letter: letter.id.clone(),
                header: header::ORIGINAL_TOPIC,
            })?,
        };
        planned.push(PlannedRedrive {
            letter: letter.id.clone(),
            event_type: letter.event_type.clone(),
            event_id: letter.event_id.clone(),
            key: letter.key.clone(),
            target_partition: match request.to {
                Target::Retry => None,
                Target::Original => letter.original_partition,
            },
            target_topic,
        });
    }
    let names: BTreeSet<String> = planned.iter().map(|p| p.target_topic.clone()).collect();
    if names.is_empty() {
        return Ok(planned);
    }
    let counts = partition_counts(kafka, names.clone()).await?;
    if let Some(missing) = names.iter().find(|name| !counts.contains_key(*name)) {
        let hint = match (request.to, &request.retry_topic) {
            (Target::Retry, Some(_)) => "check --retry-topic against the group's retry_topic setting".to_owned(),
            (Target::Retry, None) => "the group's consumer creates it when it starts: start it once, \
                                      or redrive with --to original"
                .to_owned(),
            (Target::Original, _) => "create it again (eventline setup), or redrive with --to retry".to_owned(),
        };
        return Err(DlqError::TargetMissing { topic: missing.clone(), hint });
    }
    for plan in &mut planned {
        let partitions = counts.get(&plan.target_topic).copied().unwrap_or(0);
        // A partition the topic no longer has: let the key choose.
        plan.target_partition = plan.target_partition.filter(|p| (0..partitions).contains(p));
    }
    Ok(planned)
}

async fn send_all(
    kafka: &KafkaSettings,
    topic: &DeadLetterTopic,
    records: &[OwnedMessage],
    outcome: &mut RedriveOutcome,
    progress: &mut impl FnMut(&RedriveProgress),
    stop: &CancellationToken,
) -> Result<(), DlqError> {
    let markers = marker_topic(topic.name());
    let request = TopicRequest { name: markers.clone(), partitions: 1, replication: topic.layout.replication };
    ensure_topics(kafka, &[request])
        .await
        .map_err(|source| DlqError::MarkerTopic { topic: markers.clone(), source })?;
    let sender = Sender::new(kafka)?;
    let started = Instant::now();
    let total = outcome.planned.len();
    let mut reported: Option<Instant> = None;
    let plans = outcome.planned.clone();
    for (plan, record) in plans.iter().zip(records) {
        if stop.is_cancelled() {
            outcome.interrupted = true;
            break;
        }
        let headers = redriven_headers(record, &plan.letter);
        match sender.send(&plan.target_topic, plan.target_partition, record.key(), record.payload(), headers).await {
            Ok(Position { partition: target_partition, offset: target_offset, .. }) => {
                let marker = RedriveMarker {
                    dlq_topic: plan.letter.topic.clone(),
                    dlq_partition: plan.letter.partition,
                    dlq_offset: plan.letter.offset,
                    event_id: plan.event_id.clone(),
                    target_topic: plan.target_topic.clone(),
                    target_partition,
                    target_offset,
                    redriven_at: Utc::now(),
                };
                if let Err(error) = sender.record(&markers, &marker).await {
                    tracing::warn!(letter = %plan.letter, %error, "sent, but the redrive marker could not be written");
                    outcome.unrecorded.push(plan.letter.clone());
                }
                *outcome.sent_per_topic.entry(plan.target_topic.clone()).or_default() += 1;
                outcome.sent.push(marker);
            }
            Err(error) => {
                outcome.failed.push(FailedRedrive {
                    letter: plan.letter.clone(),
                    target_topic: plan.target_topic.clone(),
                    error: error.to_string(),
                });
            }
        }
        let done = outcome.sent.len() + outcome.failed.len();
        if done == total || reported.is_none_or(|at| at.elapsed() >= PROGRESS_EVERY) {
            progress(&progress_of(outcome, total, started));
            reported = Some(Instant::now());
        }
    }
    if outcome.interrupted {
        progress(&progress_of(outcome, total, started));
    }
    Ok(())
}

fn progress_of(outcome: &RedriveOutcome, total: usize, started: Instant) -> RedriveProgress {
    let elapsed = started.elapsed().as_secs_f64().max(0.001);
    let done = outcome.sent.len() + outcome.failed.len();
    let per_second = done as f64 / elapsed;
    RedriveProgress {
        sent: outcome.sent.len(),
        failed: outcome.failed.len(),
        total,
        elapsed_seconds: elapsed,
        per_second,
        remaining_seconds: (done > 0).then(|| total.saturating_sub(done) as f64 / per_second),
    }
}

/// The record's headers without the dead-letter ones (and an earlier redrive's origin), plus
/// where this one comes from.
fn redriven_headers(record: &OwnedMessage, from: &LetterId) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new();
    if let Some(original) = record.headers() {
        for entry in original.iter().filter(|h| !h.key.starts_with(header::PREFIX) && h.key != header::REDRIVEN_FROM) {
            headers = headers.insert(Header { key: entry.key, value: entry.value });
        }
    }
    let from = from.to_string();
    headers.insert(Header { key: header::REDRIVEN_FROM, value: Some(from.as_bytes()) })
}

/// Sends with the [`EventProducer`] (idempotent, `acks=all`, replaced after a record that was
/// not acknowledged), every send awaited.
struct Sender {
    producer: EventProducer,
}

#[derive(Debug, thiserror::Error)]
enum MarkerError {
    #[error("cannot encode the redrive marker: {0}")]
    Encode(#[source] serde_json::Error),
    #[error(transparent)]
    Send(#[from] ProduceError),
}

impl Sender {
    fn new(kafka: &KafkaSettings) -> Result<Self, DlqError> {
        let settings = ProducerSettings { delivery_timeout: DELIVERY_TIMEOUT, ..ProducerSettings::default() };
        let producer = EventProducer::new(kafka, &settings)
            .map_err(|error| DlqError::kafka("create the Kafka producer", error.into_kafka()))?;
        Ok(Self { producer })
    }

    /// Sends one record and waits for the acknowledgement; where it landed.
    async fn send(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        headers: OwnedHeaders,
    ) -> Result<Position, ProduceError> {
        self.producer.send_record(OutgoingRecord { topic, partition, key, payload, headers, timestamp: None }).await
    }

    /// Writes `marker` to the marker topic.
    async fn record(&self, topic: &str, marker: &RedriveMarker) -> Result<(), MarkerError> {
        let value = serde_json::to_vec(marker).map_err(MarkerError::Encode)?;
        let key = marker.key();
        self.send(topic, None, Some(key.as_bytes()), Some(&value), OwnedHeaders::new()).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::Timestamp;

    #[test]
    fn redriven_headers_drop_the_dead_letter_ones_and_say_where_from() {
        let headers = OwnedHeaders::new()
            .insert(Header { key: "ce_id", value: Some("e-1") })
            .insert(Header { key: header::ERROR, value: Some("boom") })
            .insert(Header { key: header::REDRIVEN_FROM, value: Some("g.dlq:0:1") })
            .insert(Header { key: "empty", value: None::<&[u8]> });
        let record = OwnedMessage::new(None, None, "g.dlq".into(), Timestamp::NotAvailable, 0, 7, Some(headers));
        let from = LetterId { topic: "g.dlq".into(), partition: 0, offset: 7 };
        let redriven = redriven_headers(&record, &from);
        let pairs: Vec<(String, Option<String>)> = redriven
            .iter()
            .map(|h| (h.key.to_owned(), h.value.map(|v| String::from_utf8_lossy(v).into_owned())))
            .collect();
        assert_eq!(
            pairs,
            [
                ("ce_id".to_owned(), Some("e-1".to_owned())),
                ("empty".to_owned(), None),
                (header::REDRIVEN_FROM.to_owned(), Some("g.dlq:0:7".to_owned())),
            ]
        );
    }

    #[test]
    fn requests_read_as_json_with_defaults() {
        let request: Result<RedriveRequest, _> =
            serde_json::from_str(r#"{"group": "g", "select": {"offsets": {"range": "3..5"}}}"#);
        let request = request.map_err(|e| e.to_string());
        assert_eq!(
            request,
            Ok(RedriveRequest {
                group: "g".into(),
                dlq_topic: None,
                select: Selection::Offsets { range: OffsetRange { first: 3, last: Some(5) }, partition: None },
                to: Target::Retry,
                retry_topic: None,
                again: false,
                execute: false,
            })
        );
        let bad: Result<RedriveRequest, _> =
            serde_json::from_str(r#"{"group": "g", "select": {"offsets": {"range": "5..3"}}}"#);
        assert!(bad.is_err());
    }
}
