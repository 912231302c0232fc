//! What replay asks the broker: topics and partitions, a group's committed offsets, where each
//! log starts and ends, offsets-for-times, committing offsets from outside the group, and the
//! group's members. librdkafka calls block, so each runs in `spawn_blocking`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use eventline_common::kafka::consumer::{offsets_of, TopicPartition};
use eventline_common::kafka::KafkaSettings;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::error::ReplayError;
use crate::commands::groups::membership::{self, GroupMember, DEAD_GROUP, DESCRIBE_GROUPS_TIMEOUT};

/// How long one broker request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A client of the broker acting for `group` (never joining it: it does not subscribe).
#[derive(Clone)]
pub(super) struct GroupClient {
    consumer: Arc<BaseConsumer>,
    group: String,
}

/// What the broker said about the group's members.
#[derive(Debug)]
pub(super) enum BrokerMembers {
    /// It answered: these members (empty: none).
    Answered { state: String, members: Vec<GroupMember> },
    /// It did not answer, or answered without a usable state.
    Unknown(String),
}

impl GroupClient {
    pub(super) fn new(kafka: &KafkaSettings, group: &str) -> Result<Self, ReplayError> {
        let consumer: BaseConsumer = kafka
            .client_config()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .map_err(ReplayError::kafka("cannot create the Kafka client"))?;
        Ok(Self { consumer: Arc::new(consumer), group: group.to_owned() })
    }

    /// Runs `call` with the consumer on a blocking thread.
    async fn blocking<T, F>(&self, call: F) -> Result<T, ReplayError>
    where
        T: Send + 'static,
        F: FnOnce(&BaseConsumer, &str) -> Result<T, ReplayError> + Send + 'static,
    {
        let client = self.clone();
        tokio::task::spawn_blocking(move || call(&client.consumer, &client.group))
            .await
            .map_err(|e| ReplayError::Task(e.to_string()))?
    }

    /// Every topic with its partitions, internal topics (`__…`) left out.
    pub(super) async fn topics(&self) -> Result<BTreeMap<String, Vec<i32>>, ReplayError> {
        self.blocking(|consumer, _| {
            let metadata =
                consumer.fetch_metadata(None, REQUEST_TIMEOUT).map_err(ReplayError::kafka("cannot read the topics"))?;
            Ok(metadata
                .topics()
                .iter()
                .filter(|t| t.error().is_none() && !t.name().starts_with("__"))
                .map(|t| {
                    let mut partitions: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
                    partitions.sort_unstable();
                    (t.name().to_owned(), partitions)
                })
                .filter(|(_, partitions)| !partitions.is_empty())
                .collect())
        })
        .await
    }

    /// The group's committed offsets on `partitions` (those without one are absent).
    pub(super) async fn committed(
        &self,
        partitions: Vec<TopicPartition>,
    ) -> Result<BTreeMap<TopicPartition, i64>, ReplayError> {
        if partitions.is_empty() {
            return Ok(BTreeMap::new());
        }
        self.blocking(move |consumer, _| {
            let tpl = list(&partitions, Offset::Invalid)?;
            let committed = consumer
                .committed_offsets(tpl, REQUEST_TIMEOUT)
                .map_err(ReplayError::kafka("cannot read the group's committed offsets"))?;
            Ok(offsets_of(&committed))
        })
        .await
    }

    /// (log start, log end) of each of `partitions`.
    pub(super) async fn bounds(
        &self,
        partitions: Vec<TopicPartition>,
    ) -> Result<BTreeMap<TopicPartition, (i64, i64)>, ReplayError> {
        self.blocking(move |consumer, _| {
            let mut bounds = BTreeMap::new();
            for (topic, partition) in partitions {
                let marks = consumer
                    .fetch_watermarks(&topic, partition, REQUEST_TIMEOUT)
                    .map_err(ReplayError::kafka("cannot read where a partition's log starts and ends"))?;
                bounds.insert((topic, partition), marks);
            }
            Ok(bounds)
        })
        .await
    }

    /// The first offset at or after `millis` in each of `partitions` (absent when none is).
    pub(super) async fn offsets_at(
        &self,
        partitions: Vec<TopicPartition>,
        millis: i64,
    ) -> Result<BTreeMap<TopicPartition, i64>, ReplayError> {
        if partitions.is_empty() {
            return Ok(BTreeMap::new());
        }
        self.blocking(move |consumer, _| {
            let found = consumer
                .offsets_for_times(list(&partitions, Offset::Offset(millis))?, REQUEST_TIMEOUT)
                .map_err(ReplayError::kafka("cannot look up offsets by time"))?;
            Ok(offsets_of(&found))
        })
        .await
    }

    /// Commits `offsets` for the group from outside it (no subscription, so no rebalance).
    pub(super) async fn commit(&self, offsets: BTreeMap<TopicPartition, i64>) -> Result<(), ReplayError> {
        self.blocking(move |consumer, group| {
            let mut tpl = TopicPartitionList::new();
            for ((topic, partition), offset) in &offsets {
                tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))
                    .map_err(ReplayError::kafka("cannot build the offset list"))?;
            }
            consumer
                .commit(&tpl, CommitMode::Sync)
                .map_err(|source| ReplayError::Commit { group: group.to_owned(), source })
        })
        .await
    }

    /// DescribeGroups for this group.
    pub(super) async fn members(&self) -> Result<BrokerMembers, ReplayError> {
        self.blocking(|consumer, group| {
            let mut groups = match membership::describe(consumer, Some(group), DESCRIBE_GROUPS_TIMEOUT) {
                Ok(groups) => groups,
                Err(error) => {
                    return Ok(BrokerMembers::Unknown(format!(
                        "the broker did not answer ListGroups/DescribeGroups: {error}"
                    )))
                }
            };
            // A group with Kafka offsets is one the broker knows; not listing it is no answer.
            let Some(described) = groups.remove(group) else {
                return Ok(BrokerMembers::Unknown("the broker's ListGroups does not list the group".to_owned()));
            };
            let (state, members) = (described.state, described.members);
            // Without members, only `Empty` says nobody is in it: librdkafka does not expose the
            // group's error code, and Kafka 4 describes a group of the new consumer protocol
            // (KIP-848), live members or not, as `Dead` without members (replay.rs,
            // a_group_of_the_new_consumer_protocol_is_reset_only_on_the_operators_word).
            if members.is_empty() && state != "Empty" {
                let reason = if state == "Dead" {
                    format!("DescribeGroups answered `Dead` without members, {DEAD_GROUP}")
                } else {
                    format!("DescribeGroups answered with state `{state}` and no members")
                };
                return Ok(BrokerMembers::Unknown(reason));
            }
            Ok(BrokerMembers::Answered { state, members })
        })
        .await
    }
}

fn list(partitions: &[TopicPartition], offset: Offset) -> Result<TopicPartitionList, ReplayError> {
    let mut tpl = TopicPartitionList::new();
    for (topic, partition) in partitions {
        tpl.add_partition_offset(topic, *partition, offset)
            .map_err(ReplayError::kafka("cannot build the offset list"))?;
    }
    Ok(tpl)
}
