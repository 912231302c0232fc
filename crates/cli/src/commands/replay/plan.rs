//! The plan: per partition where the group is, where it will be, and how many events that
//! re-reads or skips. Always made (and shown) before anything changes.

use std::collections::{BTreeMap, BTreeSet};

use eventline_common::kafka::consumer::{OffsetStore, TopicPartition};
use eventline_common::kafka::KafkaSettings;
use serde::{Deserialize, Serialize};

use super::broker::GroupClient;
use super::by_time;
use super::error::ReplayError;
use super::members::{self, MemberCheck};
use super::request::{ReplayRequest, ReplayTarget, TopicSelection};
use crate::commands::groups::OffsetsFrom;

/// Said in every plan of a database-offset group.
pub const DATABASE_DEDUP_NOTE: &str = "events re-read that the consumer applied before are dropped by their event id \
     (the projector dedupes by id), so a replay re-applies only what it skipped or never saw; to rebuild a damaged \
     read model from the log use `eventline rebuild projector`";

/// What executing would do, partition by partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayPlan {
    pub group: String,
    pub target: ReplayTarget,
    /// Where the group's offsets live, and so where they are reset.
    pub offsets_in: OffsetsFrom,
    pub partitions: Vec<PartitionPlan>,
    pub totals: PlanTotals,
    /// The members when the plan was made (executing checks again).
    pub members: MemberCheck,
    pub members_stopped: bool,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionPlan {
    pub topic: String,
    pub partition: i32,
    /// The group's next offset now; `None` when it has none here.
    pub current: Option<i64>,
    /// The next offset after the reset.
    pub target: i64,
    /// The first offset still in the log.
    pub log_start: i64,
    /// The offset the next event will get.
    pub log_end: i64,
    /// `current − target` when positive: events handed to the consumer again.
    pub to_reread: i64,
    /// `target − current` when positive: events the consumer will not see.
    pub to_skip: i64,
    /// A shift asked for this offset, outside the log; `target` is clamped to the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clamped_from: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanTotals {
    pub partitions: usize,
    pub to_reread: i64,
    pub to_skip: i64,
}

impl ReplayPlan {
    /// The target offset of each partition.
    pub fn targets(&self) -> BTreeMap<TopicPartition, i64> {
        self.partitions.iter().map(|p| ((p.topic.clone(), p.partition), p.target)).collect()
    }
}

/// Looks the group up (offsets in the database's offset store when it has any there, else in
/// Kafka), resolves the target in every selected partition, and asks who is consuming. Changes
/// nothing.
pub async fn plan(
    kafka: &KafkaSettings,
    store: Option<&OffsetStore>,
    request: &ReplayRequest,
) -> Result<ReplayPlan, ReplayError> {
    let group = request.group.trim();
    if group.is_empty() {
        return Err(ReplayError::EmptyGroup);
    }
    let client = GroupClient::new(kafka, group)?;
    let stored = match store {
        Some(store) => {
            store.list(group).await.map_err(|source| ReplayError::Store { group: group.to_owned(), source })?
        }
        None => Vec::new(),
    };
    let offsets_in = if stored.is_empty() { OffsetsFrom::Kafka } else { OffsetsFrom::Database };
    let topics = client.topics().await?;
    let current: BTreeMap<TopicPartition, i64> = match offsets_in {
        OffsetsFrom::Database => stored.into_iter().map(|o| ((o.topic, o.partition), o.next_offset)).collect(),
        OffsetsFrom::Kafka => {
            let every: Vec<TopicPartition> =
                topics.iter().flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p))).collect();
            client.committed(every).await?
        }
    };
    let unknown = || ReplayError::UnknownGroup {
        group: group.to_owned(),
        database: if store.is_some() { " or in the database" } else { "" },
    };
    if current.is_empty() {
        return Err(unknown());
    }
    let mut notes = Vec::new();
    let selected = select(&topics, &request.topics, &current, &mut notes)?;
    if selected.is_empty() {
        return Err(unknown());
    }
    let bounds = client.bounds(selected.clone()).await?;
    let at_time = match request.target {
        ReplayTarget::ToDatetime(time) => by_time::first_at_or_after(&client, &bounds, time.timestamp_millis()).await?,
        _ => BTreeMap::new(),
    };
    let mut partitions = Vec::with_capacity(selected.len());
    for key in &selected {
        let (log_start, log_end) = bounds.get(key).copied().unwrap_or_default();
        let place = Place { topic: &key.0, partition: key.1, current: current.get(key).copied(), log_start, log_end };
        partitions.push(place.plan(group, request.target, at_time.get(key).copied())?);
    }
    let members = members::check(group, offsets_in, store, &client).await?;
    let without_offset = partitions.iter().filter(|p| p.current.is_none()).count();
    if without_offset > 0 {
        notes.push(format!(
            "{without_offset} partition(s) have no offset for this group yet (shown as `none`); nothing is counted as re-read or skipped there"
        ));
    }
    if offsets_in == OffsetsFrom::Database {
        notes.push(DATABASE_DEDUP_NOTE.to_owned());
    }
    let totals = PlanTotals {
        partitions: partitions.len(),
        to_reread: partitions.iter().map(|p| p.to_reread).sum(),
        to_skip: partitions.iter().map(|p| p.to_skip).sum(),
    };
    Ok(ReplayPlan {
        group: group.to_owned(),
        target: request.target,
        offsets_in,
        partitions,
        totals,
        members,
        members_stopped: request.members_stopped,
        notes,
    })
}

/// The partitions to reset: the requested ones (each must exist), or every partition of every
/// topic the group has offsets on.
fn select(
    topics: &BTreeMap<String, Vec<i32>>,
    requested: &[TopicSelection],
    current: &BTreeMap<TopicPartition, i64>,
    notes: &mut Vec<String>,
) -> Result<Vec<TopicPartition>, ReplayError> {
    let mut selected = BTreeSet::new();
    if requested.is_empty() {
        let with_offsets: BTreeSet<&str> = current.keys().map(|(topic, _)| topic.as_str()).collect();
        for topic in with_offsets {
            match topics.get(topic) {
                Some(partitions) => selected.extend(partitions.iter().map(|p| (topic.to_owned(), *p))),
                None => {
                    notes.push(format!("the group has offsets on topic `{topic}`, which no longer exists; left alone"))
                }
            }
        }
    }
    for selection in requested {
        let partitions =
            topics.get(&selection.topic).ok_or_else(|| ReplayError::UnknownTopic(selection.topic.clone()))?;
        match &selection.partitions {
            None => selected.extend(partitions.iter().map(|p| (selection.topic.clone(), *p))),
            Some(asked) => {
                for partition in asked {
                    if !partitions.contains(partition) {
                        return Err(ReplayError::UnknownPartition {
                            topic: selection.topic.clone(),
                            partition: *partition,
                            last: partitions.iter().copied().max().unwrap_or_default(),
                        });
                    }
                    selected.insert((selection.topic.clone(), *partition));
                }
            }
        }
    }
    Ok(selected.into_iter().collect())
}

/// One partition as it is now.
struct Place<'a> {
    topic: &'a str,
    partition: i32,
    current: Option<i64>,
    log_start: i64,
    log_end: i64,
}

impl Place<'_> {
    /// Where `target` puts this partition; `at_time` is the offsets-for-times answer (`None`:
    /// no event at or after the time, so the end).
    fn plan(&self, group: &str, target: ReplayTarget, at_time: Option<i64>) -> Result<PartitionPlan, ReplayError> {
        let (start, end) = (self.log_start, self.log_end);
        let mut clamped_from = None;
        let offset = match target {
            ReplayTarget::ToEarliest => start,
            ReplayTarget::ToLatest => end,
            ReplayTarget::ToDatetime(_) => at_time.unwrap_or(end).clamp(start, end),
            ReplayTarget::ShiftBy(shift) => {
                let current = self.current.ok_or_else(|| ReplayError::NoCurrentOffset {
                    group: group.to_owned(),
                    topic: self.topic.to_owned(),
                    partition: self.partition,
                })?;
                let asked = current.saturating_add(shift);
                let offset = asked.clamp(start, end);
                if offset != asked {
                    clamped_from = Some(asked);
                }
                offset
            }
            ReplayTarget::ToOffset(offset) if offset < start || offset > end => {
                return Err(ReplayError::OffsetOutOfRange {
                    topic: self.topic.to_owned(),
                    partition: self.partition,
                    offset,
                    start,
                    end,
                });
            }
            ReplayTarget::ToOffset(offset) => offset,
        };
        let (to_reread, to_skip) = match self.current {
            Some(current) => ((current - offset).max(0), (offset - current).max(0)),
            None => (0, 0),
        };
        Ok(PartitionPlan {
            topic: self.topic.to_owned(),
            partition: self.partition,
            current: self.current,
            target: offset,
            log_start: start,
            log_end: end,
            to_reread,
            to_skip,
            clamped_from,
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    fn place(current: Option<i64>) -> Place<'static> {
        Place { topic: "orders", partition: 1, current, log_start: 10, log_end: 50 }
    }

    fn target_of(current: Option<i64>, target: ReplayTarget) -> (i64, i64, i64, Option<i64>) {
        let p = place(current).plan("g", target, None).unwrap();
        (p.target, p.to_reread, p.to_skip, p.clamped_from)
    }

    #[test]
    fn earliest_and_latest_are_the_log_bounds() {
        assert_eq!(target_of(Some(30), ReplayTarget::ToEarliest), (10, 20, 0, None));
        assert_eq!(target_of(Some(30), ReplayTarget::ToLatest), (50, 0, 20, None));
        assert_eq!(
            target_of(None, ReplayTarget::ToEarliest),
            (10, 0, 0, None),
            "nothing counted without a current offset"
        );
    }

    #[test]
    fn a_shift_moves_by_n_and_is_clamped_to_the_log() {
        assert_eq!(target_of(Some(30), ReplayTarget::ShiftBy(-5)), (25, 5, 0, None));
        assert_eq!(target_of(Some(30), ReplayTarget::ShiftBy(7)), (37, 0, 7, None));
        assert_eq!(target_of(Some(30), ReplayTarget::ShiftBy(-100)), (10, 20, 0, Some(-70)));
        assert_eq!(target_of(Some(30), ReplayTarget::ShiftBy(100)), (50, 0, 20, Some(130)));
        assert_eq!(target_of(Some(30), ReplayTarget::ShiftBy(i64::MIN)).0, 10, "no overflow");
        let error = place(None).plan("g", ReplayTarget::ShiftBy(-1), None).unwrap_err().to_string();
        assert!(error.contains("orders partition 1") && error.contains("no offset there"), "{error}");
    }

    #[test]
    fn an_exact_offset_must_lie_in_the_log() {
        assert_eq!(target_of(Some(30), ReplayTarget::ToOffset(12)), (12, 18, 0, None));
        assert_eq!(target_of(Some(30), ReplayTarget::ToOffset(50)), (50, 0, 20, None), "the end is allowed");
        for outside in [9, 51] {
            let error = place(Some(30)).plan("g", ReplayTarget::ToOffset(outside), None).unwrap_err().to_string();
            assert!(error.contains(&format!("offset {outside} is outside orders partition 1")), "{error}");
            assert!(error.contains("starts at 10 and ends at 50"), "{error}");
        }
    }

    #[test]
    fn a_date_time_takes_the_looked_up_offset_or_the_end() {
        let at = ReplayTarget::ToDatetime(Utc::now());
        assert_eq!(place(Some(30)).plan("g", at, Some(20)).unwrap().to_reread, 10);
        let none_after = place(Some(30)).plan("g", at, None).unwrap();
        assert_eq!((none_after.target, none_after.to_skip), (50, 20));
    }

    #[test]
    fn selection_defaults_to_the_topics_with_offsets_and_checks_what_is_named() {
        let topics: BTreeMap<String, Vec<i32>> =
            [("orders".to_owned(), vec![0, 1, 2]), ("payments".to_owned(), vec![0])].into_iter().collect();
        let current: BTreeMap<TopicPartition, i64> =
            [(("orders".to_owned(), 1), 5), (("gone".to_owned(), 0), 1)].into_iter().collect();
        let mut notes = Vec::new();
        let all = select(&topics, &[], &current, &mut notes).unwrap();
        assert_eq!(all, [("orders".to_owned(), 0), ("orders".to_owned(), 1), ("orders".to_owned(), 2)]);
        assert!(notes.iter().any(|n| n.contains("`gone`")), "{notes:?}");

        let named: Vec<TopicSelection> = vec!["payments".parse().unwrap(), "orders:2".parse().unwrap()];
        let picked = select(&topics, &named, &current, &mut notes).unwrap();
        assert_eq!(picked, [("orders".to_owned(), 2), ("payments".to_owned(), 0)]);

        let error = select(&topics, &["nope".parse().unwrap()], &current, &mut notes).unwrap_err().to_string();
        assert_eq!(error, "topic `nope` does not exist");
        let error = select(&topics, &["orders:3".parse().unwrap()], &current, &mut notes).unwrap_err().to_string();
        assert_eq!(error, "topic `orders` has no partition 3 (it has partitions 0 to 2)");
    }
}
