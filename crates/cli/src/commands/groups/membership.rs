//! What the broker says about consumer groups: librdkafka's `rd_kafka_list_groups`, which is
//! ListGroups and then DescribeGroups for the groups listed. `eventline groups` shows it, and
//! replay asks it whether anyone consumes before it moves a Kafka-offset group.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::groups::{GroupInfo, GroupMemberInfo};
use serde::{Deserialize, Serialize};

use super::assignment::{self, TopicPartitions};

/// How long the broker gets to list and describe groups.
pub const DESCRIBE_GROUPS_TIMEOUT: Duration = Duration::from_secs(5);

/// What a `Dead` group without members may be: Kafka's DescribeGroups (the classic groups' API)
/// answers so for a group it does not describe, such as one of the new consumer protocol.
pub const DEAD_GROUP: &str = "which is how Kafka's DescribeGroups answers for a group of the new consumer \
    protocol (KIP-848, `group.protocol=consumer`), whose members it does not list";

/// The protocol type of groups of Kafka consumers, whose assignments are
/// `ConsumerProtocolAssignment`s (Kafka Connect's workers, for one, use another).
const CONSUMER_PROTOCOL: &str = "consumer";

/// A group as the broker describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerGroup {
    /// `Empty`, `Stable`, `PreparingRebalance`, `CompletingRebalance` or `Dead`.
    pub state: String,
    pub members: Vec<GroupMember>,
}

/// A member of a group: who it is and what it was assigned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMember {
    pub member_id: String,
    pub client_id: String,
    /// As the broker saw the connection, e.g. `/127.0.0.1`.
    pub host: String,
    /// Topic → partitions. Empty while the group rebalances: the broker hands out assignments
    /// only once the rebalance completes.
    pub assignment: Vec<TopicPartitions>,
    /// Why the assignment could not be read, when it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment_error: Option<String>,
}

/// Blocking: the groups the broker lists, described (`only`: just that group, if listed).
/// An error means the broker did not answer; a group it does not know is simply absent.
pub fn describe<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    only: Option<&str>,
    timeout: Duration,
) -> Result<BTreeMap<String, BrokerGroup>, KafkaError> {
    let list = consumer.fetch_group_list(only, timeout)?;
    Ok(list
        .groups()
        .iter()
        .filter(|group| only.is_none_or(|name| group.name() == name))
        .map(|group| (group.name().to_owned(), broker_group(group)))
        .collect())
}

fn broker_group(group: &GroupInfo) -> BrokerGroup {
    let protocol_type = group.protocol_type();
    let members = group.members().iter().map(|member| group_member(member, protocol_type)).collect();
    BrokerGroup { state: group.state().to_owned(), members }
}

fn group_member(member: &GroupMemberInfo, protocol_type: &str) -> GroupMember {
    let (assignment, assignment_error) = read_assignment(member.assignment(), protocol_type);
    GroupMember {
        member_id: member.id().to_owned(),
        client_id: member.client_id().to_owned(),
        host: member.client_host().to_owned(),
        assignment,
        assignment_error,
    }
}

/// The member's assignment, partitions sorted; librdkafka gives `None` for empty bytes (no
/// assignment yet).
fn read_assignment(bytes: Option<&[u8]>, protocol_type: &str) -> (Vec<TopicPartitions>, Option<String>) {
    let Some(bytes) = bytes else {
        return (Vec::new(), None);
    };
    if protocol_type != CONSUMER_PROTOCOL {
        let error = format!("the group's protocol type is `{protocol_type}`, not `{CONSUMER_PROTOCOL}`");
        return (Vec::new(), Some(error));
    }
    match assignment::decode(bytes) {
        Ok(mut topics) => {
            for topic in &mut topics {
                topic.partitions.sort_unstable();
            }
            topics.sort_by(|a, b| a.topic.cmp(&b.topic));
            (topics, None)
        }
        Err(error) => (Vec::new(), Some(format!("{error} ({} bytes)", bytes.len()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_are_read_only_from_consumer_groups_and_come_sorted() {
        let bytes = [
            0, 0, 0, 0, 0, 2, 0, 1, b'b', 0, 0, 0, 2, 0, 0, 0, 5, 0, 0, 0, 1, 0, 1, b'a', 0, 0, 0, 0, 0xFF, 0xFF, 0xFF,
            0xFF,
        ];
        let (topics, error) = read_assignment(Some(&bytes), "consumer");
        let expected = [
            TopicPartitions { topic: "a".into(), partitions: vec![] },
            TopicPartitions { topic: "b".into(), partitions: vec![1, 5] },
        ];
        assert_eq!((topics.as_slice(), error), (expected.as_slice(), None));
        assert_eq!(read_assignment(None, "consumer"), (Vec::new(), None), "no assignment yet");
        let (topics, error) = read_assignment(Some(&bytes), "connect");
        assert!(topics.is_empty());
        assert_eq!(error.as_deref(), Some("the group's protocol type is `connect`, not `consumer`"));
        let (_, error) = read_assignment(Some(&bytes[..3]), "consumer");
        assert_eq!(error.as_deref(), Some("the assignment ends at byte 2 where its topic count should be (3 bytes)"));
    }
}
