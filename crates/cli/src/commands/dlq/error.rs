//! Why a `dlq` command refused or failed, in words an operator can act on. Every refusal
//! happens before anything is sent.

use eventline_common::kafka::admin::AdminError;
use rdkafka::error::KafkaError;

use super::model::{LetterId, OffsetRangeError};

#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    #[error("--group must name a consumer group")]
    NoGroup,
    #[error("group {group} has no dead-letter topic {topic}: nothing was dead-lettered")]
    NoDeadLetterTopic { group: String, topic: String },
    #[error("the dead-letter topic {topic} given with --dlq-topic does not exist")]
    UnknownDeadLetterTopic { topic: String },
    #[error(transparent)]
    BadOffsetRange(#[from] OffsetRangeError),
    #[error("{topic} has no partition {partition} (its partitions are 0 to {})", .partitions - 1)]
    UnknownPartition { topic: String, partition: i32, partitions: i32 },
    #[error("{topic} has {partitions} partitions: name the one the offsets are in with --partition")]
    PartitionNeeded { topic: String, partitions: i32 },
    #[error("offset {offset} is past the end of {topic} partition {partition} ({})", end_note(*.start, *.end))]
    OffsetPastEnd { topic: String, partition: i32, offset: i64, start: i64, end: i64 },
    #[error("offset {offset} of {topic} partition {partition} is no longer in the topic (it now starts at {start})")]
    OffsetBeforeStart { topic: String, partition: i32, offset: i64, start: i64 },
    #[error("there is no record at offset {offset} of {topic} partition {partition}")]
    NoRecordAt { topic: String, partition: i32, offset: i64 },
    #[error("unknown event type `{0}` (`eventline schemas list` shows them)")]
    UnknownEventType(String),
    #[error(
        "dead letter {letter} has no {header} header, so it has no original topic to go back to; \
         redrive it with --to retry"
    )]
    NoOriginalTopic { letter: LetterId, header: &'static str },
    #[error("cannot redrive to {topic}: the topic does not exist ({hint})")]
    TargetMissing { topic: String, hint: String },
    #[error("cannot {action}")]
    Kafka {
        action: String,
        #[source]
        source: KafkaError,
    },
    #[error("cannot create the redrive marker topic {topic}")]
    MarkerTopic {
        topic: String,
        #[source]
        source: AdminError,
    },
}

impl DlqError {
    pub(crate) fn kafka(action: impl Into<String>, source: KafkaError) -> Self {
        Self::Kafka { action: action.into(), source }
    }
}

fn end_note(start: i64, end: i64) -> String {
    if end <= start {
        "it is empty".to_owned()
    } else {
        format!("its offsets are {start} to {}", end - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_topic_the_partition_and_the_way_out() {
        let past = DlqError::OffsetPastEnd { topic: "g.dlq".into(), partition: 0, offset: 9, start: 0, end: 3 };
        assert_eq!(past.to_string(), "offset 9 is past the end of g.dlq partition 0 (its offsets are 0 to 2)");
        let empty = DlqError::OffsetPastEnd { topic: "g.dlq".into(), partition: 0, offset: 0, start: 4, end: 4 };
        assert!(empty.to_string().ends_with("(it is empty)"), "{empty}");
        let missing = DlqError::NoDeadLetterTopic { group: "g".into(), topic: "g.dlq".into() };
        assert_eq!(missing.to_string(), "group g has no dead-letter topic g.dlq: nothing was dead-lettered");
        let partition = DlqError::UnknownPartition { topic: "g.dlq".into(), partition: 3, partitions: 1 };
        assert_eq!(partition.to_string(), "g.dlq has no partition 3 (its partitions are 0 to 0)");
    }
}
