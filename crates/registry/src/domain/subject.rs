//! Subject names and version selectors, validated once where they enter.

use std::fmt;

/// The longest subject name accepted (Confluent has no hard limit; this keeps keys sane).
pub const MAX_SUBJECT_LEN: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    #[error("Invalid subject: the subject name is empty")]
    Empty,
    #[error("Invalid subject: the subject name is longer than {MAX_SUBJECT_LEN} bytes")]
    TooLong,
    #[error("Invalid subject: the subject name contains a control character")]
    ControlCharacter,
}

/// A subject name: non-empty, at most [`MAX_SUBJECT_LEN`] bytes, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Subject(String);

impl Subject {
    pub fn parse(name: &str) -> Result<Self, SubjectError> {
        if name.is_empty() {
            return Err(SubjectError::Empty);
        }
        if name.len() > MAX_SUBJECT_LEN {
            return Err(SubjectError::TooLong);
        }
        if name.chars().any(char::is_control) {
            return Err(SubjectError::ControlCharacter);
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "The specified version '{0}' is not a valid version id. Allowed values are between [1, 2^31-1] \
     and the string \"latest\""
)]
pub struct VersionError(pub String);

/// A version in a path: a number in `1..=2^31-1`, or `latest` (also spelled `-1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSpec {
    Latest,
    Number(i64),
}

impl VersionSpec {
    pub fn parse(text: &str) -> Result<Self, VersionError> {
        if text.eq_ignore_ascii_case("latest") || text == "-1" {
            return Ok(VersionSpec::Latest);
        }
        match text.parse::<i64>() {
            Ok(n) if (1..=i64::from(i32::MAX)).contains(&n) => Ok(VersionSpec::Number(n)),
            _ => Err(VersionError(text.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_like_confluent() {
        assert_eq!(VersionSpec::parse("latest"), Ok(VersionSpec::Latest));
        assert_eq!(VersionSpec::parse("-1"), Ok(VersionSpec::Latest));
        assert_eq!(VersionSpec::parse("7"), Ok(VersionSpec::Number(7)));
        assert_eq!(VersionSpec::parse("2147483647"), Ok(VersionSpec::Number(2_147_483_647)));
        for bad in ["0", "-2", "2147483648", "one", ""] {
            let err = VersionSpec::parse(bad).unwrap_err();
            assert!(err.to_string().contains(&format!("'{bad}'")), "{err}");
        }
    }

    #[test]
    fn subjects_are_validated() {
        assert_eq!(Subject::parse("orders-value").unwrap().as_str(), "orders-value");
        assert_eq!(Subject::parse(""), Err(SubjectError::Empty));
        assert_eq!(Subject::parse("a\nb"), Err(SubjectError::ControlCharacter));
        assert_eq!(Subject::parse(&"x".repeat(MAX_SUBJECT_LEN + 1)), Err(SubjectError::TooLong));
    }
}
