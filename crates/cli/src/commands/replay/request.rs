//! What an operator asks for: a group, optionally some topics (and partitions), and one target.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use super::error::ReplayError;

/// A request to move a group's offsets (the CLI's flags, or the admin API's JSON body).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    pub group: String,
    /// Empty: every topic the group has offsets on.
    #[serde(default)]
    pub topics: Vec<TopicSelection>,
    pub target: ReplayTarget,
    /// The operator says the group's consumers are stopped: the escape hatch for when the broker
    /// cannot tell (no answer to DescribeGroups, or a group of the new consumer protocol, which it
    /// reports as `Dead`). Never overrides members that are seen.
    #[serde(default)]
    pub members_stopped: bool,
}

/// A topic and, optionally, some of its partitions (`orders` or `orders:0,2`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSelection {
    pub topic: String,
    /// `None`: every partition of the topic.
    #[serde(default)]
    pub partitions: Option<Vec<i32>>,
}

impl FromStr for TopicSelection {
    type Err = ReplayError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || ReplayError::BadTopicSelection(text.to_owned());
        let (topic, partitions) = match text.split_once(':') {
            None => (text, None),
            Some((topic, list)) => {
                let partitions: BTreeSet<i32> = list
                    .split(',')
                    .map(|p| p.trim().parse::<i32>().ok().filter(|p| *p >= 0))
                    .collect::<Option<_>>()
                    .ok_or_else(bad)?;
                (topic, Some(partitions.into_iter().collect()))
            }
        };
        let topic = topic.trim();
        if topic.is_empty() {
            return Err(bad());
        }
        Ok(Self { topic: topic.to_owned(), partitions })
    }
}

impl fmt::Display for TopicSelection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.topic)?;
        if let Some(partitions) = &self.partitions {
            let list: Vec<String> = partitions.iter().map(ToString::to_string).collect();
            write!(f, ":{}", list.join(","))?;
        }
        Ok(())
    }
}

/// Where the offsets go; the names follow Kafka's `kafka-consumer-groups --reset-offsets`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplayTarget {
    /// The log start: re-read everything still in the log.
    ToEarliest,
    /// The log end: skip everything not yet read.
    ToLatest,
    /// The first event whose record timestamp is at or after this time (the end when none is).
    ToDatetime(DateTime<Utc>),
    /// Negative: re-read this many events per partition; positive: skip this many. Clamped to
    /// the log.
    ShiftBy(i64),
    /// Exactly this offset in every selected partition; outside the log it is an error.
    ToOffset(i64),
}

impl fmt::Display for ReplayTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ToEarliest => f.write_str("the earliest offset"),
            Self::ToLatest => f.write_str("the latest offset"),
            Self::ToDatetime(time) => {
                write!(f, "the first event at or after {}", time.to_rfc3339_opts(SecondsFormat::AutoSi, true))
            }
            Self::ShiftBy(n) if *n < 0 => write!(f, "{} events back", n.unsigned_abs()),
            Self::ShiftBy(n) => write!(f, "{n} events forward"),
            Self::ToOffset(offset) => write!(f, "offset {offset}"),
        }
    }
}

/// Parses an RFC 3339 date-time (`--to-datetime`).
pub fn parse_datetime(text: &str) -> Result<DateTime<Utc>, ReplayError> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|time| time.with_timezone(&Utc))
        .map_err(|_| ReplayError::BadDateTime(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_selections_parse_with_and_without_partitions() {
        let all: TopicSelection = "orders".parse().unwrap();
        assert_eq!(all, TopicSelection { topic: "orders".into(), partitions: None });
        let some: TopicSelection = "orders:2,0,2".parse().unwrap();
        assert_eq!(some.partitions, Some(vec![0, 2]), "sorted, without duplicates");
        assert_eq!(some.to_string(), "orders:0,2");
        for bad in ["", ":1", "orders:", "orders:x", "orders:-1", "orders:1,,2"] {
            let error = bad.parse::<TopicSelection>().unwrap_err();
            assert!(error.to_string().contains("TOPIC:PARTITION"), "{bad}: {error}");
        }
    }

    #[test]
    fn date_times_must_be_rfc_3339() {
        assert_eq!(parse_datetime("2026-05-01T14:00:00+02:00").unwrap().to_rfc3339(), "2026-05-01T12:00:00+00:00");
        let error = parse_datetime("yesterday").unwrap_err().to_string();
        assert!(error.contains("`yesterday`") && error.contains("RFC 3339"), "{error}");
        assert!(parse_datetime("2026-05-01").is_err(), "a date alone is ambiguous");
    }

    #[test]
    fn requests_round_trip_as_json() {
        let request = ReplayRequest {
            group: "g".into(),
            topics: vec!["orders:1".parse().unwrap()],
            target: ReplayTarget::ShiftBy(-5),
            members_stopped: false,
        };
        let json = serde_json::to_value(&request).unwrap();
        assert_eq!(json["target"], serde_json::json!({"shift_by": -5}));
        assert_eq!(serde_json::from_value::<ReplayRequest>(json).unwrap(), request);
        let minimal: ReplayRequest = serde_json::from_str(r#"{"group":"g","target":"to_earliest"}"#).unwrap();
        assert_eq!(
            (minimal.topics.len(), minimal.target, minimal.members_stopped),
            (0, ReplayTarget::ToEarliest, false)
        );
    }
}
