//! The Avro codec with Confluent framing. Pure: no I/O, no registry calls.
//!
//! A value on the wire is `0x00`, a 4-byte big-endian schema id, then the Avro binary body.
//! Typed values go through this crate's own schema-driven serde codec, straight between the Rust
//! type and the bytes (`ser` writes, `de` reads; no intermediate `Value`, strings borrowed from
//! the input while decoding). Decoding into a different reader schema (Avro schema
//! resolution: added fields take their defaults, removed ones are skipped), and the dynamic
//! [`Value`] functions, use apache-avro. Every failure is a [`CodecError`]; nothing panics on bad
//! bytes, and a body with bytes left over after the record is refused.

mod de;
mod error;
mod names;
mod ser;
mod varint;

#[cfg(test)]
mod tests;

use std::fmt;

use apache_avro::types::Value;
use apache_avro::Schema;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use de::MAX_DEPTH;
pub use error::{BodyError, CodecError, DatumError, DatumErrorKind};

/// The first byte of every Confluent-framed message.
pub const MAGIC_BYTE: u8 = 0;
/// Magic byte plus the 4-byte schema id.
pub const HEADER_LEN: usize = 5;
/// The most a single decoded message may allocate (a corrupt length prefix cannot ask for more).
pub const MAX_DECODE_ALLOCATION_BYTES: usize = 64 * 1024 * 1024;

/// A schema id as assigned by the schema registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SchemaId(pub u32);

impl fmt::Display for SchemaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The header of a framed message and its Avro body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framed<'a> {
    pub schema_id: SchemaId,
    pub body: &'a [u8],
}

/// Splits a Confluent-framed message into schema id and body.
pub fn unframe(bytes: &[u8]) -> Result<Framed<'_>, CodecError> {
    match bytes {
        [] => Err(CodecError::Empty),
        [magic, ..] if *magic != MAGIC_BYTE => Err(CodecError::BadMagic { found: *magic }),
        [_, a, b, c, d, body @ ..] => Ok(Framed { schema_id: SchemaId(u32::from_be_bytes([*a, *b, *c, *d])), body }),
        _ => Err(CodecError::TooShort { len: bytes.len() }),
    }
}

fn header(schema_id: SchemaId, capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + capacity);
    out.push(MAGIC_BYTE);
    out.extend_from_slice(&schema_id.0.to_be_bytes());
    out
}

fn encode_error(schema: &Schema, source: impl Into<BodyError>) -> CodecError {
    CodecError::Encode { schema: schema_name(schema), source: Box::new(source.into()) }
}

/// Serializes `value` as a record of `schema` and frames it with `schema_id`.
pub fn encode<T: Serialize + ?Sized>(schema_id: SchemaId, schema: &Schema, value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = header(schema_id, 128);
    ser::to_vec(&mut out, schema, value).map_err(|source| encode_error(schema, source))?;
    Ok(out)
}

/// Encodes a dynamic Avro value (validated against `schema`) and frames it with `schema_id`.
pub fn encode_value(schema_id: SchemaId, schema: &Schema, value: Value) -> Result<Vec<u8>, CodecError> {
    let body = apache_avro::to_avro_datum(schema, value).map_err(|source| encode_error(schema, source))?;
    let mut out = header(schema_id, body.len());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes an Avro body written with `writer`; with `reader`, resolves it into that schema.
/// Pass `reader = None` when both are the same schema (it saves the resolution step).
pub fn decode_value(body: &[u8], writer: &Schema, reader: Option<&Schema>) -> Result<Value, CodecError> {
    apache_avro::util::max_allocation_bytes(MAX_DECODE_ALLOCATION_BYTES);
    let mut rest = body;
    let value = apache_avro::from_avro_datum(writer, &mut rest, None)
        .map_err(|source| CodecError::Decode { schema: schema_name(writer), source: Box::new(source.into()) })?;
    if !rest.is_empty() {
        return Err(CodecError::TrailingBytes { schema: schema_name(writer), count: rest.len() });
    }
    match reader {
        None => Ok(value),
        Some(reader) => value.resolve(reader).map_err(|source| CodecError::Resolve {
            writer: schema_name(writer),
            reader: schema_name(reader),
            source: Box::new(source),
        }),
    }
}

/// Decodes an Avro body into `T` (see [`decode_value`] for `reader`).
pub fn decode<T: DeserializeOwned>(body: &[u8], writer: &Schema, reader: Option<&Schema>) -> Result<T, CodecError> {
    match reader {
        Some(reader) if !std::ptr::eq(reader, writer) => {
            let value = decode_value(body, writer, Some(reader))?;
            apache_avro::from_value(&value).map_err(|source| CodecError::Deserialize {
                schema: schema_name(reader),
                source: Box::new(source.into()),
            })
        }
        _ => decode_direct(body, writer),
    }
}

/// Reads `T` straight from the bytes with the writer schema.
fn decode_direct<T: DeserializeOwned>(body: &[u8], writer: &Schema) -> Result<T, CodecError> {
    match de::from_slice::<T>(body, writer) {
        Ok((value, 0)) => Ok(value),
        Ok((_, count)) => Err(CodecError::TrailingBytes { schema: schema_name(writer), count }),
        Err(source) if source.kind().is_type_mismatch() => {
            Err(CodecError::Deserialize { schema: schema_name(writer), source: Box::new(source.into()) })
        }
        Err(source) => Err(CodecError::Decode { schema: schema_name(writer), source: Box::new(source.into()) }),
    }
}

/// The full name of a named schema, or its kind.
pub fn schema_name(schema: &Schema) -> String {
    schema
        .name()
        .map(|name| name.fullname(None))
        .unwrap_or_else(|| format!("{:?}", apache_avro::schema::SchemaKind::from(schema)).to_lowercase())
}

/// `true` when `schema` mentions a named type by reference (a second use of a record or enum).
pub fn has_named_references(schema: &Schema) -> bool {
    match schema {
        Schema::Ref { .. } => true,
        Schema::Record(record) => record.fields.iter().any(|f| has_named_references(&f.schema)),
        Schema::Array(array) => has_named_references(&array.items),
        Schema::Map(map) => has_named_references(&map.types),
        Schema::Union(union) => union.variants().iter().any(has_named_references),
        _ => false,
    }
}
