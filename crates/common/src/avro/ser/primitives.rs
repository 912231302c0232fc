//! The leaves of the encoder: how scalars, bytes and symbols are written, and which schema kinds
//! a value may land on.

use apache_avro::Schema;

use super::Result;
use crate::avro::error::DatumErrorKind;
use crate::avro::varint::write_long;

/// The kinds an integer may be written as (`int`, `long` and their logical types).
pub(super) fn is_integer(schema: &Schema) -> bool {
    matches!(
        schema,
        Schema::Int
            | Schema::Long
            | Schema::Date
            | Schema::TimeMillis
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos
    )
}

/// Kinds a unit (`()`, a unit struct or variant) may be written as: nothing at all.
pub(super) fn is_unit(schema: &Schema) -> bool {
    match schema {
        Schema::Null => true,
        Schema::Record(record) => record.fields.is_empty(),
        _ => false,
    }
}

/// A length-prefixed `bytes` or `string`.
#[inline]
pub(super) fn write_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() + 10);
    write_long(out, bytes.len() as i64);
    out.extend_from_slice(bytes);
}

pub(super) fn write_fixed(out: &mut Vec<u8>, size: usize, bytes: &[u8]) -> Result<()> {
    if bytes.len() != size {
        return Err(DatumErrorKind::FixedSize { size, found: bytes.len() }.into());
    }
    out.extend_from_slice(bytes);
    Ok(())
}

/// `bytes` (a big-endian two's-complement number) sign-extended to `size` bytes.
pub(super) fn write_decimal_fixed(out: &mut Vec<u8>, size: usize, bytes: &[u8]) -> Result<()> {
    let pad = size.checked_sub(bytes.len()).ok_or(DatumErrorKind::FixedSize { size, found: bytes.len() })?;
    let fill = match bytes.first() {
        Some(first) if first & 0x80 != 0 => 0xff,
        _ => 0,
    };
    out.resize(out.len() + pad, fill);
    out.extend_from_slice(bytes);
    Ok(())
}

pub(super) fn symbol_index(symbols: &[String], symbol: &str) -> Option<usize> {
    symbols.iter().position(|s| s == symbol)
}
