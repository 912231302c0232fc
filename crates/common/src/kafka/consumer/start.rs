//! Offsets from the broker: a group's committed offsets, where a start position is in each
//! partition (watermarks, offsets-for-times), and the end of each partition. Blocking calls:
//! run them on the consumer's own thread or in `spawn_blocking`.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use super::config::StartPosition;

/// A partition of a topic.
pub type TopicPartition = (String, i32);

/// How long one broker request may take.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

fn list(partitions: &[TopicPartition], offset: Offset) -> Result<TopicPartitionList, KafkaError> {
    let mut tpl = TopicPartitionList::new();
    for (topic, partition) in partitions {
        tpl.add_partition_offset(topic, *partition, offset)?;
    }
    Ok(tpl)
}

/// The offsets `consumer`'s group committed for `partitions` (those without one are absent).
pub(crate) fn committed<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    partitions: &[TopicPartition],
) -> Result<BTreeMap<TopicPartition, i64>, KafkaError> {
    let committed = consumer.committed_offsets(list(partitions, Offset::Invalid)?, REQUEST_TIMEOUT)?;
    Ok(offsets_of(&committed))
}

/// The partitions of `tpl` that carry a real offset (not `Invalid`, `End` or a negative one),
/// as a broker answers committed offsets or offsets-for-times.
pub fn offsets_of(tpl: &TopicPartitionList) -> BTreeMap<TopicPartition, i64> {
    tpl.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(offset) if offset >= 0 => Some(((e.topic().to_owned(), e.partition()), offset)),
            _ => None,
        })
        .collect()
}

/// The offset `start` means in each of `partitions`: the low watermark (`earliest`), the high
/// watermark (`latest`), or the first record at or after the time (the end when none is).
pub(crate) fn resolve<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    partitions: &[TopicPartition],
    start: StartPosition,
) -> Result<BTreeMap<TopicPartition, i64>, KafkaError> {
    let mut offsets = BTreeMap::new();
    match start {
        StartPosition::Earliest | StartPosition::Latest => {
            for (topic, partition) in partitions {
                let (low, high) = consumer.fetch_watermarks(topic, *partition, REQUEST_TIMEOUT)?;
                let offset = if start == StartPosition::Earliest { low } else { high };
                offsets.insert((topic.clone(), *partition), offset);
            }
        }
        StartPosition::At(time) => {
            let found = consumer
                .offsets_for_times(list(partitions, Offset::Offset(time.timestamp_millis()))?, REQUEST_TIMEOUT)?;
            for element in found.elements() {
                let offset = match element.offset() {
                    Offset::Offset(offset) if offset >= 0 => offset,
                    _ => consumer.fetch_watermarks(element.topic(), element.partition(), REQUEST_TIMEOUT)?.1,
                };
                offsets.insert((element.topic().to_owned(), element.partition()), offset);
            }
        }
    }
    Ok(offsets)
}

/// `partitions` with explicit offsets, for `assign` or `commit`.
pub(crate) fn with_offsets(offsets: &BTreeMap<TopicPartition, i64>) -> Result<TopicPartitionList, KafkaError> {
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in offsets {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
    }
    Ok(tpl)
}

/// The (topic, partition) pairs of a list.
pub(crate) fn partitions_of(tpl: &TopicPartitionList) -> Vec<TopicPartition> {
    tpl.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect()
}
