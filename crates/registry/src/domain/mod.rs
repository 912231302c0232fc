//! Pure registry logic, no I/O: parsing and identifying schemas, naming subjects and versions,
//! compatibility levels and the compatibility check.

pub mod compatibility;
pub mod schema;
pub mod subject;

pub use compatibility::{check, CompatibilityLevel, Direction, Incompatibility, LevelError};
pub use schema::{Fingerprint, ParsedSchema, SchemaError, SchemaType};
pub use subject::{Subject, SubjectError, VersionError, VersionSpec};

/// An error and its causes on one line: `outer: cause: root cause`.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
