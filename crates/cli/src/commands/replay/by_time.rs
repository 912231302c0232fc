//! `--to-datetime`: the first event at or after a time, exactly.
//!
//! The broker's offsets-for-times answer is only a hint, checked against the records: Tansu 0.6
//! answers offset 0 (with timestamp -1, which librdkafka does not pass on) instead of "none" when
//! no record is at or after the time, and a broker may answer with the first offset of the batch
//! holding the record. So when a partition's last record is older than the time the answer is
//! the end, and otherwise the records from the hint on are read up to the first one at or after
//! the time. That reads one record per partition, plus the few before the hint's record in its
//! batch.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use eventline_common::kafka::consumer::TopicPartition;
use eventline_common::kafka::KafkaSettings;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::broker::GroupClient;
use super::error::ReplayError;

/// How long reading a partition may wait for its next record before giving up.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(100);

/// The first offset whose record timestamp is at or after `millis` in each partition of
/// `bounds` (partition → (log start, log end)); the log end when there is none.
pub(super) async fn first_at_or_after(
    kafka: &KafkaSettings,
    client: &GroupClient,
    bounds: &BTreeMap<TopicPartition, (i64, i64)>,
    millis: i64,
) -> Result<BTreeMap<TopicPartition, i64>, ReplayError> {
    let hints = client.offsets_at(bounds.keys().cloned().collect(), millis).await?;
    let reader: BaseConsumer = kafka
        .client_config()
        .set("group.id", format!("eventline-replay-reader-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        // One record is wanted and it is there: do not let the broker hold the fetch (Tansu
        // waits the whole fetch.wait.max.ms, 500 ms by default, per read).
        .set("fetch.wait.max.ms", "10")
        .create()
        .map_err(ReplayError::kafka("cannot create the Kafka reader"))?;
    let bounds = bounds.clone();
    tokio::task::spawn_blocking(move || {
        let mut found = BTreeMap::new();
        for ((topic, partition), (start, end)) in bounds {
            let hint = hints.get(&(topic.clone(), partition)).copied().unwrap_or(end).clamp(start, end);
            let log = Log { reader: &reader, topic: &topic, partition, end };
            let offset = if hint == end || log.first_at_or_after(end - 1, millis)? == end {
                end
            } else {
                log.first_at_or_after(hint, millis)?
            };
            found.insert((topic, partition), offset);
        }
        Ok(found)
    })
    .await
    .map_err(|e| ReplayError::Task(e.to_string()))?
}

/// One partition read from outside any group (assigned, never committed).
struct Log<'a> {
    reader: &'a BaseConsumer,
    topic: &'a str,
    partition: i32,
    end: i64,
}

impl Log<'_> {
    /// The first offset in `from..end` whose record is at or after `millis`, else `end`.
    fn first_at_or_after(&self, from: i64, millis: i64) -> Result<i64, ReplayError> {
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(self.topic, self.partition, Offset::Offset(from))
            .map_err(ReplayError::kafka("cannot build the offset list"))?;
        self.reader.assign(&assignment).map_err(ReplayError::kafka("cannot read a partition to find the time"))?;
        let mut next = from;
        let mut waiting_since = Instant::now();
        while next < self.end {
            match self.reader.poll(POLL) {
                None if waiting_since.elapsed() > READ_TIMEOUT => {
                    return Err(ReplayError::ReadTimeout {
                        topic: self.topic.to_owned(),
                        partition: self.partition,
                        offset: next,
                    });
                }
                None => {}
                Some(Err(source)) => {
                    return Err(ReplayError::Kafka { what: "cannot read a partition to find the time", source })
                }
                Some(Ok(record)) => {
                    if record.topic() != self.topic || record.partition() != self.partition || record.offset() < next {
                        continue;
                    }
                    if record.timestamp().to_millis().is_some_and(|at| at >= millis) {
                        return Ok(record.offset());
                    }
                    next = record.offset() + 1;
                    waiting_since = Instant::now();
                }
            }
        }
        Ok(self.end)
    }
}
