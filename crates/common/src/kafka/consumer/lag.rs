//! A group's lag, from outside the group (what `eventline groups` shows): per partition the
//! group's offset, the log's start and end, and how many events lie between. The offsets come
//! from Kafka (offset mode `kafka`) or from the offset store (`transactional`, where Kafka's
//! commits are only a trailing copy).

use std::collections::BTreeMap;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use serde::Serialize;

use super::offsets::{OffsetStore, OffsetStoreError};
use super::start::{self, TopicPartition, REQUEST_TIMEOUT};
use crate::kafka::KafkaSettings;

#[derive(Debug, thiserror::Error)]
pub enum LagError {
    #[error("topic {0} does not exist")]
    UnknownTopic(String),
    #[error("Kafka request failed: {0}")]
    Kafka(#[from] KafkaError),
    #[error("cannot read the group's stored offsets")]
    Store(#[from] OffsetStoreError),
    #[error("the lag lookup task failed: {0}")]
    Task(String),
}

/// Where a group's offsets are authoritative.
#[derive(Debug, Clone, Copy)]
pub enum OffsetSource<'a> {
    Kafka,
    Store(&'a OffsetStore),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// The group's next offset; `None` when it has none (it starts at its start position).
    pub committed: Option<i64>,
    /// The first offset still in the log.
    pub start: i64,
    /// The high watermark: the offset the next event will get.
    pub end: i64,
    /// `end − committed` (or `end − start` without an offset).
    pub lag: i64,
}

/// The lag of `group` on every partition of `topics`, in topic and partition order.
pub async fn group_lag(
    kafka: &KafkaSettings,
    group: &str,
    topics: &[String],
    source: OffsetSource<'_>,
) -> Result<Vec<PartitionLag>, LagError> {
    let config = {
        let mut config = kafka.client_config();
        config.set("group.id", group).set("enable.auto.commit", "false");
        config
    };
    let topics = topics.to_vec();
    let from_kafka = matches!(source, OffsetSource::Kafka);
    let (watermarks, committed) = tokio::task::spawn_blocking(move || broker_side(&config, &topics, from_kafka))
        .await
        .map_err(|e| LagError::Task(e.to_string()))??;
    let offsets = match source {
        OffsetSource::Kafka => committed,
        OffsetSource::Store(store) => {
            let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
            for (topic, partition) in watermarks.keys() {
                by_topic.entry(topic).or_default().push(*partition);
            }
            let mut stored = BTreeMap::new();
            for (topic, partitions) in by_topic {
                for (partition, next) in store.load(group, topic, &partitions).await? {
                    stored.insert((topic.to_owned(), partition), next);
                }
            }
            stored
        }
    };
    Ok(watermarks
        .into_iter()
        .map(|((topic, partition), (start, end))| {
            let committed = offsets.get(&(topic.clone(), partition)).copied();
            let lag = (end - committed.unwrap_or(start).max(start)).max(0);
            PartitionLag { topic, partition, committed, start, end, lag }
        })
        .collect())
}

type Watermarks = BTreeMap<TopicPartition, (i64, i64)>;

/// Watermarks of every partition of `topics` and, when asked, the group's committed offsets.
fn broker_side(
    config: &rdkafka::ClientConfig,
    topics: &[String],
    with_committed: bool,
) -> Result<(Watermarks, BTreeMap<TopicPartition, i64>), LagError> {
    let consumer: BaseConsumer = config.create()?;
    let mut watermarks = BTreeMap::new();
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), REQUEST_TIMEOUT)?;
        let partitions = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map(|t| t.partitions().iter().map(|p| p.id()).collect::<Vec<_>>())
            .filter(|partitions| !partitions.is_empty())
            .ok_or_else(|| LagError::UnknownTopic(topic.clone()))?;
        for partition in partitions {
            let marks = consumer.fetch_watermarks(topic, partition, REQUEST_TIMEOUT)?;
            watermarks.insert((topic.clone(), partition), marks);
        }
    }
    let committed = if with_committed {
        let keys: Vec<TopicPartition> = watermarks.keys().cloned().collect();
        start::committed(&consumer, &keys)?
    } else {
        BTreeMap::new()
    };
    Ok((watermarks, committed))
}
