//! The codec's errors: [`CodecError`] for callers, [`DatumError`] for what went wrong inside one
//! Avro body (with the path of the field it happened at).

use std::fmt;

use apache_avro::Schema;

use super::HEADER_LEN;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("message value is empty; expected a Confluent-framed Avro record")]
    Empty,
    #[error("message value has {len} bytes; a Confluent frame needs at least {HEADER_LEN} (magic byte and schema id)")]
    TooShort { len: usize },
    #[error("unknown magic byte {found:#04x}; expected 0x00 (Confluent wire format)")]
    BadMagic { found: u8 },
    #[error("value does not match schema {schema}: {source}")]
    Encode {
        schema: String,
        #[source]
        source: Box<BodyError>,
    },
    #[error("cannot decode the Avro body with writer schema {schema}: {source}")]
    Decode {
        schema: String,
        #[source]
        source: Box<BodyError>,
    },
    #[error("the Avro body has {count} bytes left over after the {schema} record")]
    TrailingBytes { schema: String, count: usize },
    #[error("cannot resolve data written with {writer} into reader schema {reader}: {source}")]
    Resolve {
        writer: String,
        reader: String,
        #[source]
        source: Box<apache_avro::Error>,
    },
    #[error("the decoded {schema} record does not fit the target type: {source}")]
    Deserialize {
        schema: String,
        #[source]
        source: Box<BodyError>,
    },
}

/// Why an Avro body could not be written or read: found by this codec, or by apache-avro (the
/// dynamic `Value` paths and schema resolution).
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error(transparent)]
    Datum(#[from] DatumError),
    #[error(transparent)]
    Library(#[from] apache_avro::Error),
}

/// What is wrong with one Avro datum, and where.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DatumErrorKind {
    #[error("the body ends in the middle of a value")]
    UnexpectedEnd,
    #[error("a variable-length integer runs past 10 bytes")]
    VarintTooLong,
    #[error("{0} does not fit an Avro int (32 bits)")]
    IntOverflow(i64),
    #[error("byte {0:#04x} is not a boolean (0 or 1)")]
    BadBoolean(u8),
    #[error("a string is not valid UTF-8")]
    InvalidUtf8,
    #[error("length {0} is negative")]
    NegativeLength(i64),
    #[error("a length of {len} runs past the {remaining} bytes left")]
    LengthPastEnd { len: i64, remaining: usize },
    #[error("a block of {count} items cannot fit in the {remaining} bytes left")]
    TooManyItems { count: u64, remaining: usize },
    #[error("union branch {index} does not exist; the union has {branches}")]
    UnionIndex { index: i64, branches: usize },
    #[error("enum symbol {index} does not exist; the enum has {symbols}")]
    EnumIndex { index: i64, symbols: usize },
    #[error("values nest deeper than {0} levels")]
    TooDeep(usize),
    #[error("the schema refers to {0}, which it does not define")]
    UnknownName(String),
    #[error("not a uuid: {0}")]
    InvalidUuid(String),
    #[error("the target type has fewer items than the data")]
    TrailingItems,
    #[error("expected {expected}, but the schema has {schema}")]
    Mismatch { expected: &'static str, schema: String },
    #[error("{0}")]
    Custom(String),
    #[error("{found} bytes do not fit fixed size {size}")]
    FixedSize { size: usize, found: usize },
    #[error("`{0}` is not a symbol of the enum")]
    UnknownSymbol(String),
    #[error("the record has no field `{0}`")]
    UnknownField(String),
    #[error("field `{0}` is missing and has no default")]
    MissingField(String),
    #[error("field `{0}` is given twice")]
    DuplicateField(String),
    #[error("the value announced {announced} items but gave {given}")]
    LengthMismatch { announced: usize, given: usize },
}

impl DatumErrorKind {
    /// `true` when the bytes are fine but the Rust type does not fit them (a `Deserialize` error
    /// rather than a `Decode` one).
    pub fn is_type_mismatch(&self) -> bool {
        matches!(self, Self::Mismatch { .. } | Self::Custom(_) | Self::TrailingItems)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Field(String),
    Index(usize),
    Key(String),
}

/// A [`DatumErrorKind`] at a field path such as `lines[2].sku`.
#[derive(Debug, Clone, PartialEq)]
pub struct DatumError(Box<Inner>);

#[derive(Debug, Clone, PartialEq)]
struct Inner {
    kind: DatumErrorKind,
    /// Innermost segment first (segments are added as the error travels outwards).
    path: Vec<Segment>,
}

impl DatumError {
    pub fn kind(&self) -> &DatumErrorKind {
        &self.0.kind
    }

    /// The field path, outermost first, e.g. `lines[2].sku`; empty at the top level.
    pub fn path(&self) -> String {
        let mut out = String::new();
        for segment in self.0.path.iter().rev() {
            match segment {
                Segment::Field(name) if out.is_empty() => out.push_str(name),
                Segment::Field(name) => {
                    out.push('.');
                    out.push_str(name);
                }
                Segment::Index(i) => out.push_str(&format!("[{i}]")),
                Segment::Key(key) => out.push_str(&format!("[{key:?}]")),
            }
        }
        out
    }

    #[cold]
    pub(crate) fn at_field(mut self, name: &str) -> Self {
        self.0.path.push(Segment::Field(name.to_owned()));
        self
    }

    #[cold]
    pub(crate) fn at_index(mut self, index: usize) -> Self {
        self.0.path.push(Segment::Index(index));
        self
    }

    #[cold]
    pub(crate) fn at_key(mut self, key: &str) -> Self {
        self.0.path.push(Segment::Key(key.to_owned()));
        self
    }

    /// The schema `schema` cannot hold (or give) `expected`.
    #[cold]
    pub(crate) fn mismatch(expected: &'static str, schema: &Schema) -> Self {
        DatumErrorKind::Mismatch { expected, schema: schema_kind(schema) }.into()
    }
}

fn schema_kind(schema: &Schema) -> String {
    match schema.name() {
        Some(name) => name.fullname(None),
        None => format!("{:?}", apache_avro::schema::SchemaKind::from(schema)).to_lowercase(),
    }
}

impl From<DatumErrorKind> for DatumError {
    #[cold]
    fn from(kind: DatumErrorKind) -> Self {
        Self(Box::new(Inner { kind, path: Vec::new() }))
    }
}

impl fmt::Display for DatumError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.path.is_empty() {
            self.0.kind.fmt(f)
        } else {
            write!(f, "at {}: {}", self.path(), self.0.kind)
        }
    }
}

impl std::error::Error for DatumError {}

impl serde::de::Error for DatumError {
    #[cold]
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DatumErrorKind::Custom(msg.to_string()).into()
    }
}

impl serde::ser::Error for DatumError {
    #[cold]
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DatumErrorKind::Custom(msg.to_string()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_reads_outermost_first() {
        let err = DatumError::from(DatumErrorKind::InvalidUtf8).at_field("sku").at_index(2).at_field("lines");
        assert_eq!(err.path(), "lines[2].sku");
        assert_eq!(err.to_string(), "at lines[2].sku: a string is not valid UTF-8");
        let keyed = DatumError::from(DatumErrorKind::UnexpectedEnd).at_key("a").at_field("attrs");
        assert_eq!(keyed.path(), "attrs[\"a\"]");
    }

    #[test]
    fn serde_errors_are_type_mismatches_and_byte_errors_are_not() {
        assert!(<DatumError as serde::de::Error>::custom("missing field `x`").kind().is_type_mismatch());
        assert!(!DatumErrorKind::UnexpectedEnd.is_type_mismatch());
    }
}
