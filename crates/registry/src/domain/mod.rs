//! Pure registry logic, no I/O: parsing and identifying schemas, naming subjects and versions,
//! compatibility levels and the compatibility check.

pub mod compatibility;
pub mod schema;
pub mod subject;

pub use compatibility::{check, CompatibilityLevel, Direction, Incompatibility, LevelError};
pub use schema::{Fingerprint, ParsedSchema, SchemaError, SchemaType};
pub use subject::{Subject, SubjectError, VersionError, VersionSpec};

pub use eventline_common::telemetry::error_chain;
