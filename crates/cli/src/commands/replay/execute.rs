//! Applying a plan: check the members again, write the targets where the group's offsets live,
//! and read them back to show they changed.

use std::collections::BTreeMap;

use eventline_common::kafka::consumer::{OffsetStore, PartitionOffset, TopicPartition};
use eventline_common::kafka::KafkaSettings;
use serde::{Deserialize, Serialize};

use super::broker::GroupClient;
use super::error::ReplayError;
use super::members::{self, MemberCheck};
use super::plan::ReplayPlan;
use crate::commands::groups::OffsetsFrom;

/// What executing a plan did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayOutcome {
    pub group: String,
    pub offsets_in: OffsetsFrom,
    /// The members check that let it go on.
    pub members: MemberCheck,
    pub partitions: Vec<AppliedPartition>,
    /// `true` when every partition read back at its target.
    pub verified: bool,
    /// Database-offset groups: the trailing copy of the offsets in Kafka.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka_copy: Option<KafkaCopy>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedPartition {
    pub topic: String,
    pub partition: i32,
    /// The offset the plan saw.
    pub before: Option<i64>,
    pub target: i64,
    /// The offset read back after writing.
    pub after: Option<i64>,
}

/// The best-effort copy of a database group's offsets in Kafka (what other tools read).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KafkaCopy {
    Committed,
    Failed(String),
}

/// Applies `plan`: refuses while the group has live members (checked again now), then writes
/// every target in one go (one database transaction, or one Kafka commit), and reads back.
pub async fn execute(
    kafka: &KafkaSettings,
    store: Option<&OffsetStore>,
    plan: &ReplayPlan,
) -> Result<ReplayOutcome, ReplayError> {
    let group = plan.group.as_str();
    let client = GroupClient::new(kafka, group)?;
    let members = members::check(group, plan.offsets_in, store, &client).await?;
    if let Some(refusal) = members.refusal(group, plan.members_stopped) {
        return Err(refusal);
    }
    let targets = plan.targets();
    let kafka_copy = match plan.offsets_in {
        OffsetsFrom::Database => {
            let store = store.ok_or(ReplayError::NoDatabase)?;
            let positions: Vec<PartitionOffset> = targets
                .iter()
                .map(|((topic, partition), next_offset)| PartitionOffset {
                    topic: topic.clone(),
                    partition: *partition,
                    next_offset: *next_offset,
                })
                .collect();
            store
                .store(group, &positions)
                .await
                .map_err(|source| ReplayError::Store { group: group.to_owned(), source })?;
            Some(match client.commit(targets.clone()).await {
                Ok(()) => KafkaCopy::Committed,
                Err(error) => KafkaCopy::Failed(format!("{:#}", anyhow::Error::new(error))),
            })
        }
        OffsetsFrom::Kafka => {
            client.commit(targets.clone()).await?;
            None
        }
    };
    let after = read_offsets(plan.offsets_in, group, store, &client, targets.keys().cloned().collect()).await?;
    let partitions: Vec<AppliedPartition> = plan
        .partitions
        .iter()
        .map(|p| AppliedPartition {
            topic: p.topic.clone(),
            partition: p.partition,
            before: p.current,
            target: p.target,
            after: after.get(&(p.topic.clone(), p.partition)).copied(),
        })
        .collect();
    let verified = partitions.iter().all(|p| p.after == Some(p.target));
    Ok(ReplayOutcome {
        group: group.to_owned(),
        offsets_in: plan.offsets_in,
        members,
        partitions,
        verified,
        kafka_copy,
    })
}

/// The group's offsets on `partitions`, from where they live.
pub(super) async fn read_offsets(
    offsets_in: OffsetsFrom,
    group: &str,
    store: Option<&OffsetStore>,
    client: &GroupClient,
    partitions: Vec<TopicPartition>,
) -> Result<BTreeMap<TopicPartition, i64>, ReplayError> {
    match offsets_in {
        OffsetsFrom::Kafka => client.committed(partitions).await,
        OffsetsFrom::Database => {
            let store = store.ok_or(ReplayError::NoDatabase)?;
            let stored =
                store.list(group).await.map_err(|source| ReplayError::Store { group: group.to_owned(), source })?;
            Ok(stored
                .into_iter()
                .map(|o| ((o.topic, o.partition), o.next_offset))
                .filter(|(key, _)| partitions.contains(key))
                .collect())
        }
    }
}
