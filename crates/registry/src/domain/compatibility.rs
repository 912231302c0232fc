//! Compatibility levels and the check of a candidate schema against earlier versions.
//!
//! - BACKWARD: the new schema can read data written with the old one.
//! - FORWARD: the old schema can read data written with the new one.
//! - FULL: both.
//! - Non-transitive levels compare with the latest version only; `_TRANSITIVE` with all of them.

use std::fmt;
use std::str::FromStr;

use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::Schema;

/// Longest reason kept from the Avro library (its messages can embed whole schemas).
const MAX_REASON_LEN: usize = 400;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CompatibilityLevel {
    #[default]
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "Invalid compatibility level '{0}'. Valid values are none, backward, forward, full, \
     backward_transitive, forward_transitive, and full_transitive"
)]
pub struct LevelError(pub String);

impl CompatibilityLevel {
    pub const ALL: [CompatibilityLevel; 7] = [
        CompatibilityLevel::Backward,
        CompatibilityLevel::BackwardTransitive,
        CompatibilityLevel::Forward,
        CompatibilityLevel::ForwardTransitive,
        CompatibilityLevel::Full,
        CompatibilityLevel::FullTransitive,
        CompatibilityLevel::None,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CompatibilityLevel::Backward => "BACKWARD",
            CompatibilityLevel::BackwardTransitive => "BACKWARD_TRANSITIVE",
            CompatibilityLevel::Forward => "FORWARD",
            CompatibilityLevel::ForwardTransitive => "FORWARD_TRANSITIVE",
            CompatibilityLevel::Full => "FULL",
            CompatibilityLevel::FullTransitive => "FULL_TRANSITIVE",
            CompatibilityLevel::None => "NONE",
        }
    }

    pub fn is_transitive(self) -> bool {
        matches!(
            self,
            CompatibilityLevel::BackwardTransitive
                | CompatibilityLevel::ForwardTransitive
                | CompatibilityLevel::FullTransitive
        )
    }

    /// The directions this level checks.
    pub fn directions(self) -> &'static [Direction] {
        match self {
            CompatibilityLevel::Backward | CompatibilityLevel::BackwardTransitive => &[Direction::Backward],
            CompatibilityLevel::Forward | CompatibilityLevel::ForwardTransitive => &[Direction::Forward],
            CompatibilityLevel::Full | CompatibilityLevel::FullTransitive => &[Direction::Backward, Direction::Forward],
            CompatibilityLevel::None => &[],
        }
    }
}

impl FromStr for CompatibilityLevel {
    type Err = LevelError;

    /// Case-insensitive, as clients send `full` or `FULL`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|level| level.as_str().eq_ignore_ascii_case(text))
            .ok_or_else(|| LevelError(text.to_owned()))
    }
}

impl fmt::Display for CompatibilityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The new schema reads data written with the old one.
    Backward,
    /// The old schema reads data written with the new one.
    Forward,
}

/// One failed comparison: with which version, in which direction, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incompatibility {
    pub version: i64,
    pub direction: Direction,
    pub reason: String,
}

impl fmt::Display for Incompatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.direction {
            Direction::Backward => "the new schema cannot read data written with",
            Direction::Forward => "data written with the new schema cannot be read by",
        };
        write!(f, "{what} version {}: {}", self.version, self.reason)
    }
}

/// Checks `candidate` against `previous` (ordered oldest to newest) under `level`; an empty
/// result means compatible. Non-transitive levels look at the last element only.
pub fn check(level: CompatibilityLevel, candidate: &Schema, previous: &[(i64, &Schema)]) -> Vec<Incompatibility> {
    let against: &[(i64, &Schema)] =
        if level.is_transitive() { previous } else { previous.last().map(std::slice::from_ref).unwrap_or_default() };
    let mut problems = Vec::new();
    for (version, old) in against.iter().rev() {
        for direction in level.directions() {
            let (writer, reader) = match direction {
                Direction::Backward => (*old, candidate),
                Direction::Forward => (candidate, *old),
            };
            if let Err(error) = SchemaCompatibility::can_read(writer, reader) {
                problems.push(Incompatibility { version: *version, direction: *direction, reason: describe(&error) });
            }
        }
    }
    problems
}

/// The error and its causes on one line, shortened.
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let text = super::error_chain(error);
    let mut line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.len() > MAX_REASON_LEN {
        let mut cut = MAX_REASON_LEN;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push('…');
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use CompatibilityLevel::*;

    fn record(fields: &str) -> Schema {
        Schema::parse_str(&format!(r#"{{"type":"record","name":"R","fields":[{fields}]}}"#)).unwrap()
    }

    fn id() -> &'static str {
        r#"{"name":"id","type":"string"}"#
    }

    fn ok(level: CompatibilityLevel, candidate: &Schema, previous: &[&Schema]) -> bool {
        let history: Vec<(i64, &Schema)> = previous.iter().enumerate().map(|(i, s)| (i as i64 + 1, *s)).collect();
        check(level, candidate, &history).is_empty()
    }

    #[test]
    fn levels_parse_case_insensitively_and_round_trip() {
        for level in CompatibilityLevel::ALL {
            assert_eq!(level.as_str().parse::<CompatibilityLevel>(), Ok(level));
            assert_eq!(level.as_str().to_lowercase().parse::<CompatibilityLevel>(), Ok(level));
        }
        assert_eq!(CompatibilityLevel::default(), Backward);
        let err = "SIDEWAYS".parse::<CompatibilityLevel>().unwrap_err();
        assert!(err.to_string().contains("'SIDEWAYS'"), "{err}");
    }

    #[test]
    fn adding_a_field_with_a_default_is_backward_and_forward_compatible() {
        let v1 = record(id());
        let v2 = record(&format!(r#"{},{{"name":"age","type":"int","default":0}}"#, id()));
        for level in [Backward, Forward, Full] {
            assert!(ok(level, &v2, &[&v1]), "{level}");
        }
    }

    #[test]
    fn adding_a_field_without_a_default_breaks_backward_only() {
        let v1 = record(id());
        let v2 = record(&format!(r#"{},{{"name":"age","type":"int"}}"#, id()));
        assert!(!ok(Backward, &v2, &[&v1]));
        assert!(ok(Forward, &v2, &[&v1]));
        assert!(!ok(Full, &v2, &[&v1]));
        assert!(ok(None, &v2, &[&v1]));
        let problems = check(Backward, &v2, &[(1, &v1)]);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].version, 1);
        assert_eq!(problems[0].direction, Direction::Backward);
        assert!(problems[0].reason.contains("age"), "{}", problems[0].reason);
        assert!(problems[0].to_string().contains("version 1"), "{}", problems[0]);
    }

    #[test]
    fn removing_a_field_without_a_default_breaks_forward_only() {
        let v1 = record(&format!(r#"{},{{"name":"age","type":"int"}}"#, id()));
        let v2 = record(id());
        assert!(ok(Backward, &v2, &[&v1]));
        assert!(!ok(Forward, &v2, &[&v1]));
        assert!(!ok(Full, &v2, &[&v1]));
        let problems = check(Full, &v2, &[(1, &v1)]);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].direction, Direction::Forward);
    }

    #[test]
    fn changing_a_type_incompatibly_breaks_both_directions() {
        let v1 = record(r#"{"name":"n","type":"string"}"#);
        let v2 = record(r#"{"name":"n","type":"boolean"}"#);
        let problems = check(Full, &v2, &[(1, &v1)]);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems.iter().all(|p| p.reason.len() <= MAX_REASON_LEN + '…'.len_utf8()));
    }

    #[test]
    fn type_promotion_is_backward_compatible_only() {
        let v1 = record(r#"{"name":"n","type":"int"}"#);
        let v2 = record(r#"{"name":"n","type":"long"}"#);
        assert!(ok(Backward, &v2, &[&v1]));
        assert!(!ok(Forward, &v2, &[&v1]));
    }

    /// v1 has `a` required; v2 drops it; v3 adds it back with no default. v3 reads v2 data? No:
    /// `a` has no default and v2 data lacks it. Yet v3 versus v1 alone is fine. With a history
    /// where only an older version conflicts, transitive and non-transitive levels differ.
    #[test]
    fn transitive_levels_check_every_version_and_others_the_latest_only() {
        let v1 = record(id());
        let v2 = record(&format!(r#"{},{{"name":"email","type":"string","default":""}}"#, id()));
        // v3 drops the default of `email`: it reads v2 data (which has email) but not v1 data.
        let v3 = record(&format!(r#"{},{{"name":"email","type":"string"}}"#, id()));
        let history = [&v1, &v2];
        assert!(ok(Backward, &v3, &history), "latest only: v3 reads v2");
        assert!(!ok(BackwardTransitive, &v3, &history), "v3 cannot read v1 data");
        assert!(!ok(FullTransitive, &v3, &history));
        let numbered = [(1, &v1), (2, &v2)];
        let problems = check(BackwardTransitive, &v3, &numbered);
        assert_eq!(problems.iter().map(|p| p.version).collect::<Vec<_>>(), [1]);

        // Forward: v1 (the oldest) cannot read data from a schema that drops a required field.
        let w1 = record(&format!(r#"{},{{"name":"n","type":"int"}}"#, id()));
        let w2 = record(&format!(r#"{},{{"name":"n","type":"int","default":0}}"#, id()));
        let w3 = record(id());
        assert!(ok(Forward, &w3, &[&w1, &w2]));
        assert!(!ok(ForwardTransitive, &w3, &[&w1, &w2]));
    }

    #[test]
    fn no_history_is_always_compatible() {
        let v1 = record(id());
        for level in CompatibilityLevel::ALL {
            assert!(ok(level, &v1, &[]), "{level}");
        }
    }
}
