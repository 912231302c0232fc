//! What a dead letter is to an operator: where it sits, what event it carries, where it came
//! from, why it failed, and whether it was redriven (read back from the marker topic).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use eventline_common::envelope::header as ce;
use eventline_common::kafka::consumer::dead_letter::header;
use rdkafka::message::{Headers, Message, OwnedMessage};
use serde::{Deserialize, Serialize};

/// The suffix of the topic that records redrives: `<dlq topic>.redrives`.
pub const MARKER_SUFFIX: &str = ".redrives";

/// A dead letter's place: `<dlq topic>:<partition>:<offset>` (also the value of the
/// `eventline_redriven_from` header of what was redriven from it).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LetterId {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl fmt::Display for LetterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.topic, self.partition, self.offset)
    }
}

/// `pending`, or `redriven` at least once (see [`DeadLetter::redrives`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LetterStatus {
    Pending,
    Redriven,
}

/// One record of a dead-letter topic, read from its headers. Every field but the place is
/// optional: a letter written by hand, or by an older runtime, may lack any header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub id: LetterId,
    /// The CloudEvents type (`ce_type`), the record's full name.
    pub event_type: Option<String>,
    /// The event id (`ce_id`): unchanged by a redrive.
    pub event_id: Option<String>,
    pub key: Option<String>,
    pub original_topic: Option<String>,
    pub original_partition: Option<i32>,
    pub original_offset: Option<i64>,
    /// `decode`, `unknown_schema`, `permanent` or `retries_exhausted`.
    pub reason: Option<String>,
    pub attempts: Option<u32>,
    /// When it was dead-lettered (RFC 3339, as the header says).
    pub dead_lettered_at: Option<String>,
    pub group: Option<String>,
    /// The error with its causes.
    pub error: Option<String>,
    /// Set when this letter is itself a redriven event that failed again.
    pub redriven_from: Option<String>,
    pub status: LetterStatus,
    /// Every redrive of this letter, oldest first.
    pub redrives: Vec<RedriveMarker>,
}

impl DeadLetter {
    /// The letter a dead-letter record is, not yet matched with its markers.
    pub(crate) fn from_message(message: &OwnedMessage) -> Self {
        let text = |name: &str| header_text(message, name);
        Self {
            id: LetterId {
                topic: message.topic().to_owned(),
                partition: message.partition(),
                offset: message.offset(),
            },
            event_type: text(ce::TYPE),
            event_id: text(ce::ID),
            key: message.key().map(|key| String::from_utf8_lossy(key).into_owned()),
            original_topic: text(header::ORIGINAL_TOPIC),
            original_partition: text(header::ORIGINAL_PARTITION).and_then(|p| p.parse().ok()),
            original_offset: text(header::ORIGINAL_OFFSET).and_then(|o| o.parse().ok()),
            reason: text(header::ERROR_KIND),
            attempts: text(header::ATTEMPTS).and_then(|a| a.parse().ok()),
            dead_lettered_at: text(header::TIME),
            group: text(header::GROUP),
            error: text(header::ERROR),
            redriven_from: text(header::REDRIVEN_FROM),
            status: LetterStatus::Pending,
            redrives: Vec::new(),
        }
    }

    pub(crate) fn with_redrives(mut self, redrives: Vec<RedriveMarker>) -> Self {
        self.status = if redrives.is_empty() { LetterStatus::Pending } else { LetterStatus::Redriven };
        self.redrives = redrives;
        self
    }

    /// The most recent redrive, if any.
    pub fn last_redrive(&self) -> Option<&RedriveMarker> {
        self.redrives.last()
    }
}

/// The value of the first header named `name`, as text.
pub(crate) fn header_text(message: &OwnedMessage, name: &str) -> Option<String> {
    let headers = message.headers()?;
    headers.iter().find(|h| h.key == name).and_then(|h| h.value).map(|v| String::from_utf8_lossy(v).into_owned())
}

/// What a redrive records in `<dlq topic>.redrives` (key `<partition>:<offset>`), after the
/// record was acknowledged where it was sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RedriveMarker {
    pub dlq_topic: String,
    pub dlq_partition: i32,
    pub dlq_offset: i64,
    pub event_id: Option<String>,
    pub target_topic: String,
    pub target_partition: i32,
    pub target_offset: i64,
    pub redriven_at: DateTime<Utc>,
}

impl RedriveMarker {
    /// The marker record's key.
    pub fn key(&self) -> String {
        format!("{}:{}", self.dlq_partition, self.dlq_offset)
    }
}

/// Offsets of one partition, both ends included: `A..B`, `A..` (to the end) or `A`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OffsetRange {
    pub first: i64,
    /// `None`: up to the last offset.
    pub last: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not an offset range: {problem} (write A..B for A to B, both included; A.. for A to the end; or one offset A)")]
pub struct OffsetRangeError {
    pub input: String,
    pub problem: String,
}

impl OffsetRange {
    /// Checks optional ends (`--from-offset`, `--to-offset`) the way a range is checked.
    pub fn check_bounds(first: Option<i64>, last: Option<i64>) -> Result<(), OffsetRangeError> {
        let shown = |end: Option<i64>| end.map_or_else(|| "-".to_owned(), |e| e.to_string());
        Self::checked(first.unwrap_or(0), last, || {
            format!("--from-offset {} --to-offset {}", shown(first), shown(last))
        })
        .map(|_| ())
    }

    /// Whether `offset` is in the range.
    pub fn contains(&self, offset: i64) -> bool {
        offset >= self.first && self.last.is_none_or(|last| offset <= last)
    }

    fn checked(first: i64, last: Option<i64>, input: impl FnOnce() -> String) -> Result<Self, OffsetRangeError> {
        let problem = if first < 0 || last.is_some_and(|l| l < 0) {
            Some("offsets are never negative")
        } else if last.is_some_and(|l| l < first) {
            Some("the last offset is before the first")
        } else {
            None
        };
        match problem {
            Some(problem) => Err(OffsetRangeError { input: input(), problem: problem.to_owned() }),
            None => Ok(Self { first, last }),
        }
    }
}

impl FromStr for OffsetRange {
    type Err = OffsetRangeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let input = text.trim();
        let bad = |problem: &str| OffsetRangeError { input: input.to_owned(), problem: problem.to_owned() };
        let number =
            |part: &str| part.trim().parse::<i64>().map_err(|_| bad(&format!("`{}` is not an offset", part.trim())));
        let (first, last) = match input.split_once("..") {
            None => {
                let only = number(input)?;
                (only, Some(only))
            }
            Some((first, last)) => {
                if first.trim().is_empty() {
                    return Err(bad("the first offset is missing"));
                }
                let last = last.strip_prefix('=').unwrap_or(last);
                let last = if last.trim().is_empty() { None } else { Some(number(last)?) };
                (number(first)?, last)
            }
        };
        Self::checked(first, last, || input.to_owned())
    }
}

impl fmt::Display for OffsetRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.last {
            Some(last) if last == self.first => write!(f, "{last}"),
            Some(last) => write!(f, "{}..{last}", self.first),
            None => write!(f, "{}..", self.first),
        }
    }
}

impl TryFrom<String> for OffsetRange {
    type Error = OffsetRangeError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<OffsetRange> for String {
    fn from(range: OffsetRange) -> Self {
        range.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_ranges_include_both_ends_and_refuse_what_is_not_one() {
        assert_eq!("3..5".parse(), Ok(OffsetRange { first: 3, last: Some(5) }));
        assert_eq!("3..=5".parse(), Ok(OffsetRange { first: 3, last: Some(5) }));
        assert_eq!(" 7.. ".parse(), Ok(OffsetRange { first: 7, last: None }));
        assert_eq!("4".parse(), Ok(OffsetRange { first: 4, last: Some(4) }));
        let range: OffsetRange = "3..5".parse().unwrap_or(OffsetRange { first: -1, last: None });
        assert!(range.contains(3) && range.contains(5) && !range.contains(6) && !range.contains(2));
        for (input, problem) in [
            ("5..3", "before the first"),
            ("..3", "first offset is missing"),
            ("a..3", "`a` is not an offset"),
            ("3..x", "`x` is not an offset"),
            ("-1..3", "never negative"),
            ("", "`` is not an offset"),
        ] {
            match input.parse::<OffsetRange>() {
                Err(error) => {
                    assert!(error.to_string().contains(problem), "{input}: {error}");
                    assert!(error.to_string().contains("A..B"), "{error}");
                }
                Ok(range) => panic!("{input} parsed as {range:?}"),
            }
        }
        for text in ["3..5", "7..", "4"] {
            assert_eq!(text.parse::<OffsetRange>().map(|r| r.to_string()).ok().as_deref(), Some(text));
        }
    }

    #[test]
    fn from_and_to_offsets_are_checked_like_a_range() {
        assert_eq!(OffsetRange::check_bounds(None, None), Ok(()));
        assert_eq!(OffsetRange::check_bounds(None, Some(4)), Ok(()));
        assert_eq!(OffsetRange::check_bounds(Some(2), None), Ok(()));
        let error = OffsetRange::check_bounds(Some(5), Some(1)).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("--from-offset 5 --to-offset 1") && error.contains("before the first"), "{error}");
    }
}
