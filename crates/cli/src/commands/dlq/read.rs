//! Reading the dead-letter topic and its marker topic: partitions and watermarks, the records
//! of chosen offset ranges, and the redrives recorded so far. Partitions are assigned directly:
//! no consumer group is joined and nothing is committed.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::time::{Duration, Instant};

use eventline_common::kafka::KafkaSettings;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};

use super::error::DlqError;
use super::model::{DeadLetter, RedriveMarker, MARKER_SUFFIX};

/// How long one metadata or watermark request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long reading may go without a record before it gives up.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The client id prefix of the reader's consumer; it never joins a group or commits.
const READER_GROUP_PREFIX: &str = "eventline-dlq";

/// The offsets a partition holds: `low` is the first, `high` the next to be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Watermarks {
    pub low: i64,
    pub high: i64,
}

/// A topic's partitions with their watermarks, and its replication factor.
#[derive(Debug, Clone)]
pub(crate) struct TopicLayout {
    pub name: String,
    pub partitions: BTreeMap<i32, Watermarks>,
    pub replication: i32,
}

impl TopicLayout {
    pub fn partition_count(&self) -> i32 {
        i32::try_from(self.partitions.len()).unwrap_or(i32::MAX)
    }
}

/// Runs `work` with a consumer of its own on a blocking thread. The consumer is closed
/// afterwards on another one: closing takes a good 100 ms nobody needs to wait for.
async fn with_reader<T: Send + 'static>(
    kafka: &KafkaSettings,
    what: &'static str,
    work: impl FnOnce(&BaseConsumer) -> Result<T, DlqError> + Send + 'static,
) -> Result<T, DlqError> {
    let config = kafka
        .client_config()
        .set("group.id", format!("{READER_GROUP_PREFIX}-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .clone();
    let read = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config.create().map_err(|e| DlqError::kafka("create a Kafka consumer", e))?;
        let outcome = work(&consumer);
        drop(tokio::task::spawn_blocking(move || drop(consumer)));
        outcome
    });
    read.await.map_err(|_| DlqError::kafka(what, KafkaError::Canceled))?
}

/// The topics among `names` that exist, with their partition counts.
pub(crate) async fn partition_counts(
    kafka: &KafkaSettings,
    names: BTreeSet<String>,
) -> Result<BTreeMap<String, i32>, DlqError> {
    with_reader(kafka, "read the topics' metadata", move |consumer| {
        let metadata = consumer
            .fetch_metadata(None, REQUEST_TIMEOUT)
            .map_err(|e| DlqError::kafka("read the topics' metadata", e))?;
        Ok(metadata
            .topics()
            .iter()
            .filter(|t| names.contains(t.name()) && t.error().is_none() && !t.partitions().is_empty())
            .map(|t| (t.name().to_owned(), i32::try_from(t.partitions().len()).unwrap_or(i32::MAX)))
            .collect())
    })
    .await
}

/// The layout of `topic`, or `None` when it does not exist.
pub(crate) async fn layout(kafka: &KafkaSettings, topic: &str) -> Result<Option<TopicLayout>, DlqError> {
    let topic = topic.to_owned();
    with_reader(kafka, "read a topic's offsets", move |consumer| {
        let metadata = consumer
            .fetch_metadata(Some(&topic), REQUEST_TIMEOUT)
            .map_err(|e| DlqError::kafka(format!("read the metadata of {topic}"), e))?;
        let Some(found) =
            metadata.topics().iter().find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
        else {
            return Ok(None);
        };
        let replication = found.partitions().iter().map(|p| p.replicas().len()).max().unwrap_or(1).max(1);
        let mut partitions = BTreeMap::new();
        for partition in found.partitions() {
            let (low, high) = consumer
                .fetch_watermarks(&topic, partition.id(), REQUEST_TIMEOUT)
                .map_err(|e| DlqError::kafka(format!("read the offsets of {topic} partition {}", partition.id()), e))?;
            partitions.insert(partition.id(), Watermarks { low, high });
        }
        Ok(Some(TopicLayout { name: topic, partitions, replication: i32::try_from(replication).unwrap_or(1) }))
    })
    .await
}

/// The records of `topic` in `ranges` (end excluded, per partition), in partition and offset order.
pub(crate) async fn read(
    kafka: &KafkaSettings,
    topic: &str,
    ranges: BTreeMap<i32, Range<i64>>,
) -> Result<Vec<OwnedMessage>, DlqError> {
    let ranges: BTreeMap<i32, Range<i64>> = ranges.into_iter().filter(|(_, range)| !range.is_empty()).collect();
    if ranges.is_empty() {
        return Ok(Vec::new());
    }
    let topic = topic.to_owned();
    with_reader(kafka, "read a topic", move |consumer| {
        let mut assignment = TopicPartitionList::new();
        for (partition, range) in &ranges {
            assignment
                .add_partition_offset(&topic, *partition, Offset::Offset(range.start))
                .map_err(|e| DlqError::kafka(format!("assign {topic} partition {partition}"), e))?;
        }
        consumer.assign(&assignment).map_err(|e| DlqError::kafka(format!("assign the partitions of {topic}"), e))?;
        let mut remaining: BTreeSet<i32> = ranges.keys().copied().collect();
        let mut records = Vec::new();
        let mut last_progress = Instant::now();
        while !remaining.is_empty() {
            match consumer.poll(Duration::from_millis(200)) {
                None if last_progress.elapsed() > IDLE_TIMEOUT => {
                    return Err(DlqError::kafka(
                        format!("read {topic}: no record arrived for {}s", IDLE_TIMEOUT.as_secs()),
                        KafkaError::Canceled,
                    ))
                }
                None => {}
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    remaining.remove(&partition);
                }
                Some(Err(error)) => return Err(DlqError::kafka(format!("read {topic}"), error)),
                Some(Ok(message)) => {
                    last_progress = Instant::now();
                    let partition = message.partition();
                    let Some(range) = ranges.get(&partition) else { continue };
                    if range.contains(&message.offset()) {
                        records.push(message.detach());
                    }
                    if message.offset() + 1 >= range.end {
                        remaining.remove(&partition);
                    }
                }
            }
        }
        records.sort_by_key(|m| (m.partition(), m.offset()));
        Ok(records)
    })
    .await
}

/// Every redrive recorded for the letters of `dlq_topic`, by (partition, offset), oldest first.
/// Markers that cannot be read are left out and counted in the second value.
pub(crate) async fn markers(
    kafka: &KafkaSettings,
    dlq_topic: &str,
) -> Result<(BTreeMap<(i32, i64), Vec<RedriveMarker>>, usize), DlqError> {
    let Some(layout) = layout(kafka, &marker_topic(dlq_topic)).await? else {
        return Ok((BTreeMap::new(), 0));
    };
    let ranges = layout.partitions.iter().map(|(p, w)| (*p, w.low..w.high)).collect();
    let mut found: BTreeMap<(i32, i64), Vec<RedriveMarker>> = BTreeMap::new();
    let mut unreadable = 0;
    for record in read(kafka, &layout.name, ranges).await? {
        match record.payload().map(serde_json::from_slice::<RedriveMarker>) {
            Some(Ok(marker)) if marker.dlq_topic == dlq_topic => {
                found.entry((marker.dlq_partition, marker.dlq_offset)).or_default().push(marker);
            }
            _ => unreadable += 1,
        }
    }
    Ok((found, unreadable))
}

/// The topic recording the redrives of `dlq_topic`.
pub fn marker_topic(dlq_topic: &str) -> String {
    format!("{dlq_topic}{MARKER_SUFFIX}")
}

/// The letters of `dlq_topic` in `ranges`, each with its redrives.
pub(crate) async fn letters(
    kafka: &KafkaSettings,
    dlq_topic: &str,
    ranges: BTreeMap<i32, Range<i64>>,
) -> Result<(Vec<(DeadLetter, OwnedMessage)>, usize), DlqError> {
    let (records, markers) = tokio::join!(read(kafka, dlq_topic, ranges), markers(kafka, dlq_topic));
    let (records, (mut markers, unreadable)) = (records?, markers?);
    let letters = records
        .into_iter()
        .map(|record| {
            let redrives = markers.remove(&(record.partition(), record.offset())).unwrap_or_default();
            (DeadLetter::from_message(&record).with_redrives(redrives), record)
        })
        .collect();
    Ok((letters, unreadable))
}
