//! Why a replay could not be planned or executed. The messages are the ones users see (the CLI
//! prints them, the admin API returns them), so each names what is wrong and what to do.

use eventline_common::kafka::consumer::{MemberRegistryError, OffsetStoreError};
use rdkafka::error::KafkaError;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("the consumer group name is empty")]
    EmptyGroup,
    #[error(
        "consumer group `{group}` is unknown: it has no offsets in Kafka{database}; check the name with `eventline groups`"
    )]
    UnknownGroup {
        group: String,
        /// `" or in the database"` when a database was searched too.
        database: &'static str,
    },
    #[error("topic `{0}` does not exist")]
    UnknownTopic(String),
    #[error("topic `{topic}` has no partition {partition} (it has partitions 0 to {last})")]
    UnknownPartition { topic: String, partition: i32, last: i32 },
    #[error("`{0}` is not a topic selection: expected TOPIC or TOPIC:PARTITION,PARTITION,… (e.g. orders:0,2)")]
    BadTopicSelection(String),
    #[error("`{0}` is not a date-time: expected RFC 3339, e.g. 2026-05-01T12:00:00Z")]
    BadDateTime(String),
    #[error(
        "offset {offset} is outside {topic} partition {partition}: its log starts at {start} and ends at {end} \
         (the end is the next offset to be written, the latest a group can be at)"
    )]
    OffsetOutOfRange { topic: String, partition: i32, offset: i64, start: i64, end: i64 },
    #[error(
        "cannot shift {topic} partition {partition}: group `{group}` has no offset there to shift from; \
         use --to-earliest, --to-latest, --to-datetime or --to-offset"
    )]
    NoCurrentOffset { group: String, topic: String, partition: i32 },
    #[error(
        "consumer group `{group}` has live members: {members}; stop the group's consumers (for `eventline up`, \
         stop it), then run again"
    )]
    LiveMembers { group: String, members: String },
    #[error(
        "the {source_name} cannot tell whether group `{group}` has live members ({reason}); stop its consumers \
         and pass --members-stopped"
    )]
    MembersUnknown { group: String, source_name: &'static str, reason: String },
    #[error("the plan's offsets are in the database, but no database is configured (set [database] url)")]
    NoDatabase,
    #[error("cannot read or write group `{group}`'s offsets in the database")]
    Store {
        group: String,
        #[source]
        source: OffsetStoreError,
    },
    #[error("cannot read group `{group}`'s live members from the database")]
    Members {
        group: String,
        #[source]
        source: MemberRegistryError,
    },
    #[error("cannot commit group `{group}`'s offsets to Kafka")]
    Commit {
        group: String,
        #[source]
        source: KafkaError,
    },
    #[error("Kafka request failed ({what})")]
    Kafka {
        what: &'static str,
        #[source]
        source: KafkaError,
    },
    #[error("the broker task failed: {0}")]
    Task(String),
}

impl ReplayError {
    pub(super) fn kafka(what: &'static str) -> impl FnOnce(KafkaError) -> Self {
        move |source| Self::Kafka { what, source }
    }
}
