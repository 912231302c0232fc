//! Is anyone consuming? A reset under a live consumer is lost (its next commit overwrites it),
//! so replay executes only when the group's members are known to be gone.
//!
//! - Database-offset groups: the heartbeat rows the consumer runtime keeps
//!   ([`MemberRegistry`]); a heartbeat older than [`MEMBER_TTL`] is a dead member.
//! - Kafka-offset groups: the broker's DescribeGroups. Members → refuse, naming them; `Empty` →
//!   go on. No usable answer → refuse unless the operator says the consumers are stopped
//!   (`--members-stopped`, which never overrides members that are seen): a broker that does not
//!   answer (down, unreachable, or without ListGroups/DescribeGroups), or a group it describes
//!   as `Dead` without members, which is what Kafka 4 says of a group of the new consumer
//!   protocol (KIP-848) even while it has members.

use std::fmt;

use eventline_common::kafka::consumer::members::now_ms;
use eventline_common::kafka::consumer::{MemberRegistry, OffsetStore, MEMBER_TTL};
use serde::{Deserialize, Serialize};

use super::broker::{BrokerMembers, GroupClient};
use super::error::ReplayError;
use crate::commands::groups::OffsetsFrom;

/// Who was asked about the group's members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberSource {
    /// The heartbeat rows in the database.
    Database,
    /// The broker's DescribeGroups.
    Broker,
}

impl MemberSource {
    fn name(self) -> &'static str {
        match self {
            Self::Database => "database",
            Self::Broker => "broker",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberStatus {
    /// No live member: safe to execute.
    NoneLive,
    /// Live members (listed): executing is refused.
    Live,
    /// Nobody could tell: executing needs `members_stopped`.
    Unknown,
}

/// What is known about the group's members when the plan was made (and again before executing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberCheck {
    pub source: MemberSource,
    pub status: MemberStatus,
    pub members: Vec<LiveMember>,
    /// How the answer came about, for people.
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveMember {
    pub id: String,
    pub host: String,
    /// From a heartbeat row.
    pub pid: Option<i64>,
    /// Milliseconds since the last heartbeat (database members).
    pub heartbeat_age_ms: Option<i64>,
    /// From the broker.
    pub client_id: Option<String>,
}

impl fmt::Display for LiveMember {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {}", self.id, self.host)?;
        if let Some(pid) = self.pid {
            write!(f, " (pid {pid}")?;
            if let Some(age) = self.heartbeat_age_ms {
                write!(f, ", last heartbeat {:.1}s ago", age as f64 / 1000.0)?;
            }
            f.write_str(")")?;
        }
        if let Some(client) = &self.client_id {
            write!(f, " (client {client})")?;
        }
        Ok(())
    }
}

impl MemberCheck {
    /// Why executing must not go on, if it must not.
    pub fn refusal(&self, group: &str, members_stopped: bool) -> Option<ReplayError> {
        match self.status {
            MemberStatus::NoneLive => None,
            MemberStatus::Live => Some(ReplayError::LiveMembers {
                group: group.to_owned(),
                members: self.members.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
            }),
            MemberStatus::Unknown if members_stopped => None,
            MemberStatus::Unknown => Some(ReplayError::MembersUnknown {
                group: group.to_owned(),
                source_name: self.source.name(),
                reason: self.detail.clone(),
            }),
        }
    }
}

/// Asks whoever knows the members of `group`, whose offsets are in `offsets_in`.
pub(super) async fn check(
    group: &str,
    offsets_in: OffsetsFrom,
    store: Option<&OffsetStore>,
    client: &GroupClient,
) -> Result<MemberCheck, ReplayError> {
    match (offsets_in, store) {
        (OffsetsFrom::Database, Some(store)) => Ok(from_heartbeats(group, store).await),
        (OffsetsFrom::Database, None) => Err(ReplayError::NoDatabase),
        (OffsetsFrom::Kafka, _) => Ok(from_broker(client.members().await?)),
    }
}

async fn from_heartbeats(group: &str, store: &OffsetStore) -> MemberCheck {
    let registry = MemberRegistry::new(store.database().clone());
    let now = now_ms();
    match registry.live(group, now, MEMBER_TTL).await {
        Ok(live) => {
            let members: Vec<LiveMember> = live
                .into_iter()
                .map(|m| LiveMember {
                    id: m.member_id,
                    host: m.host,
                    pid: Some(m.pid),
                    heartbeat_age_ms: Some((now - m.heartbeat_at_ms).max(0)),
                    client_id: None,
                })
                .collect();
            let status = if members.is_empty() { MemberStatus::NoneLive } else { MemberStatus::Live };
            let detail = format!(
                "consumer heartbeats in the database; a member is live while its heartbeat is under {}s old",
                MEMBER_TTL.as_secs()
            );
            MemberCheck { source: MemberSource::Database, status, members, detail }
        }
        Err(error) => MemberCheck {
            source: MemberSource::Database,
            status: MemberStatus::Unknown,
            members: Vec::new(),
            detail: format!("{:#}", anyhow::Error::new(error)).replace('\n', " "),
        },
    }
}

fn from_broker(answer: BrokerMembers) -> MemberCheck {
    match answer {
        BrokerMembers::Answered { state, members } => {
            let members: Vec<LiveMember> = members
                .into_iter()
                .map(|m| LiveMember {
                    id: m.member_id,
                    host: m.host,
                    pid: None,
                    heartbeat_age_ms: None,
                    client_id: Some(m.client_id),
                })
                .collect();
            let status = if members.is_empty() { MemberStatus::NoneLive } else { MemberStatus::Live };
            MemberCheck {
                source: MemberSource::Broker,
                status,
                members,
                detail: format!("the broker's DescribeGroups says the group is {state}"),
            }
        }
        BrokerMembers::Unknown(reason) => MemberCheck {
            source: MemberSource::Broker,
            status: MemberStatus::Unknown,
            members: Vec::new(),
            detail: reason,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(status: MemberStatus, members: Vec<LiveMember>) -> MemberCheck {
        MemberCheck { source: MemberSource::Broker, status, members, detail: "no answer".into() }
    }

    #[test]
    fn live_members_are_refused_and_named_even_when_said_to_be_stopped() {
        let member = LiveMember {
            id: "m-1".into(),
            host: "box".into(),
            pid: Some(42),
            heartbeat_age_ms: Some(1500),
            client_id: None,
        };
        let live = check(MemberStatus::Live, vec![member]);
        for said_stopped in [false, true] {
            let message = live.refusal("g", said_stopped).map(|e| e.to_string()).unwrap_or_default();
            assert!(message.contains("m-1 on box (pid 42, last heartbeat 1.5s ago)"), "{message}");
            assert!(message.contains("stop the group's consumers"), "{message}");
        }
    }

    #[test]
    fn the_broker_answer_decides_between_live_and_none() {
        use crate::commands::groups::membership::GroupMember;
        let member = GroupMember {
            member_id: "rdkafka-1".into(),
            client_id: "svc".into(),
            host: "/10.0.0.7".into(),
            assignment: Vec::new(),
            assignment_error: None,
        };
        let live = from_broker(BrokerMembers::Answered { state: "Stable".into(), members: vec![member] });
        assert_eq!(live.status, MemberStatus::Live);
        assert_eq!(live.members[0].to_string(), "rdkafka-1 on /10.0.0.7 (client svc)");
        let empty = from_broker(BrokerMembers::Answered { state: "Empty".into(), members: Vec::new() });
        assert_eq!(empty.status, MemberStatus::NoneLive);
        let silent = from_broker(BrokerMembers::Unknown("DescribeGroups failed".into()));
        assert_eq!((silent.status, silent.detail.as_str()), (MemberStatus::Unknown, "DescribeGroups failed"));
    }

    #[test]
    fn an_unknown_answer_needs_the_operator_to_say_the_members_stopped() {
        let unknown = check(MemberStatus::Unknown, Vec::new());
        let message = unknown.refusal("g", false).map(|e| e.to_string()).unwrap_or_default();
        assert!(
            message.contains("broker cannot tell whether group `g`") && message.contains("--members-stopped"),
            "{message}"
        );
        assert!(unknown.refusal("g", true).is_none());
        assert!(check(MemberStatus::NoneLive, Vec::new()).refusal("g", false).is_none());
    }
}
