//! Which dead letters a command is about: the group's dead-letter topic (it must exist), the
//! partitions and offsets asked for (they must be in it), and the event type (it must be in the
//! catalog). Every check happens before anything is read or sent.

use std::collections::BTreeMap;
use std::ops::Range;

use eventline_common::catalog::Catalog;
use eventline_common::kafka::consumer::DEAD_LETTER_SUFFIX;
use eventline_common::kafka::KafkaSettings;

use super::error::DlqError;
use super::read::{layout, TopicLayout};

/// A group's dead-letter topic, as it is now.
#[derive(Debug, Clone)]
pub(crate) struct DeadLetterTopic {
    pub layout: TopicLayout,
}

impl DeadLetterTopic {
    /// The dead-letter topic of `group`: `explicit`, or `<group>.dlq`.
    pub async fn open(kafka: &KafkaSettings, group: &str, explicit: Option<&str>) -> Result<Self, DlqError> {
        if group.trim().is_empty() {
            return Err(DlqError::NoGroup);
        }
        let name = explicit.map_or_else(|| format!("{group}{DEAD_LETTER_SUFFIX}"), str::to_owned);
        match layout(kafka, &name).await? {
            Some(layout) => Ok(Self { layout }),
            None if explicit.is_some() => Err(DlqError::UnknownDeadLetterTopic { topic: name }),
            None => Err(DlqError::NoDeadLetterTopic { group: group.to_owned(), topic: name }),
        }
    }

    pub fn name(&self) -> &str {
        &self.layout.name
    }

    /// The offsets to read per partition (end excluded): every partition, or `partition`;
    /// from `first` (default: the first offset still there) to `last` (default: the end).
    /// Offsets must be in the partition; naming any needs a partition when there are several.
    pub fn ranges(
        &self,
        partition: Option<i32>,
        first: Option<i64>,
        last: Option<i64>,
    ) -> Result<BTreeMap<i32, Range<i64>>, DlqError> {
        let topic = self.name();
        let partitions: Vec<i32> = match partition {
            Some(partition) if self.layout.partitions.contains_key(&partition) => vec![partition],
            Some(partition) => {
                return Err(DlqError::UnknownPartition {
                    topic: topic.to_owned(),
                    partition,
                    partitions: self.layout.partition_count(),
                })
            }
            None => self.layout.partitions.keys().copied().collect(),
        };
        if (first.is_some() || last.is_some()) && partitions.len() > 1 {
            return Err(DlqError::PartitionNeeded {
                topic: topic.to_owned(),
                partitions: self.layout.partition_count(),
            });
        }
        let mut ranges = BTreeMap::new();
        for partition in partitions {
            let Some(marks) = self.layout.partitions.get(&partition).copied() else { continue };
            for offset in [first, last].into_iter().flatten() {
                if offset >= marks.high {
                    return Err(DlqError::OffsetPastEnd {
                        topic: topic.to_owned(),
                        partition,
                        offset,
                        start: marks.low,
                        end: marks.high,
                    });
                }
                if offset < marks.low {
                    return Err(DlqError::OffsetBeforeStart {
                        topic: topic.to_owned(),
                        partition,
                        offset,
                        start: marks.low,
                    });
                }
            }
            let start = first.unwrap_or(marks.low);
            let end = last.map_or(marks.high, |last| last + 1);
            ranges.insert(partition, start..end);
        }
        Ok(ranges)
    }
}

/// The full name (`ce_type`) of an event type given by short or full name.
pub(crate) fn event_type(catalog: &Catalog, name: &str) -> Result<String, DlqError> {
    catalog.event(name).map(|spec| spec.full_name.clone()).ok_or_else(|| DlqError::UnknownEventType(name.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::dlq::read::Watermarks;

    fn topic(partitions: &[(i64, i64)]) -> DeadLetterTopic {
        DeadLetterTopic {
            layout: TopicLayout {
                name: "g.dlq".into(),
                partitions: partitions
                    .iter()
                    .enumerate()
                    .map(|(p, (low, high))| (i32::try_from(p).unwrap_or(0), Watermarks { low: *low, high: *high }))
                    .collect(),
                replication: 1,
            },
        }
    }

    #[test]
    fn ranges_stay_inside_the_partition() {
        let one = topic(&[(2, 10)]);
        assert_eq!(one.ranges(None, None, None).ok(), Some(BTreeMap::from([(0, 2..10)])));
        assert_eq!(one.ranges(None, Some(3), Some(5)).ok(), Some(BTreeMap::from([(0, 3..6)])));
        assert_eq!(one.ranges(Some(0), Some(9), None).ok(), Some(BTreeMap::from([(0, 9..10)])));
        assert!(matches!(one.ranges(None, Some(10), None), Err(DlqError::OffsetPastEnd { offset: 10, .. })));
        assert!(matches!(one.ranges(None, Some(3), Some(12)), Err(DlqError::OffsetPastEnd { offset: 12, .. })));
        assert!(matches!(one.ranges(None, Some(1), None), Err(DlqError::OffsetBeforeStart { start: 2, .. })));
        assert!(matches!(one.ranges(Some(1), None, None), Err(DlqError::UnknownPartition { partition: 1, .. })));

        let two = topic(&[(0, 3), (0, 0)]);
        assert_eq!(two.ranges(None, None, None).ok(), Some(BTreeMap::from([(0, 0..3), (1, 0..0)])));
        assert!(matches!(two.ranges(None, Some(1), None), Err(DlqError::PartitionNeeded { partitions: 2, .. })));
        assert!(matches!(two.ranges(Some(1), Some(0), None), Err(DlqError::OffsetPastEnd { .. })));
    }
}
