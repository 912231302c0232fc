//! Avro binary → serde, straight from the bytes, driven by the writer schema.
//!
//! [`from_slice`] walks the schema and the bytes together and hands values to the target type's
//! visitor: strings are borrowed from the input (`visit_borrowed_str`), records arrive as maps of
//! field name → value, unions pick their branch from the index on the wire (`["null", T]` maps to
//! `Option<T>`), enums give their symbol. Every length and count is checked against the bytes
//! left before anything is allocated, and nesting is capped at [`MAX_DEPTH`], so hostile input
//! gives an error, never a panic, a huge allocation or a stack overflow.

mod access;
mod value;

use apache_avro::schema::{EnumSchema, UnionSchema};
use apache_avro::Schema;
use serde::Deserialize;

use super::error::{DatumError, DatumErrorKind};
use super::names::Names;
use super::varint;
use value::ValueDe;

/// How deeply records, arrays and maps may nest in one message.
pub const MAX_DEPTH: usize = 128;
/// How many items of zero-byte types (e.g. `null`) one message may claim: they cannot be bounded
/// by the bytes left, so they are bounded by this instead.
const ZERO_SIZE_ITEM_BUDGET: u64 = 1 << 16;

type Result<T> = std::result::Result<T, DatumError>;

/// Deserializes a `T` from the front of `input`, which was written with `schema`. Returns the
/// value and how many bytes follow it.
pub(crate) fn from_slice<'de, T: Deserialize<'de>>(input: &'de [u8], schema: &'de Schema) -> Result<(T, usize)> {
    let mut decoder = Decoder { input, names: Names::new(schema), depth: 0, zero_size_budget: ZERO_SIZE_ITEM_BUDGET };
    let value = T::deserialize(ValueDe::new(&mut decoder, schema))?;
    Ok((value, decoder.input.len()))
}

/// The bytes still to read and what is needed to read them.
pub(crate) struct Decoder<'de> {
    input: &'de [u8],
    names: Names<'de>,
    depth: usize,
    zero_size_budget: u64,
}

impl<'de> Decoder<'de> {
    #[inline]
    fn long(&mut self) -> Result<i64> {
        varint::read_long(&mut self.input).map_err(DatumError::from)
    }

    #[inline]
    fn int(&mut self) -> Result<i32> {
        let value = self.long()?;
        i32::try_from(value).map_err(|_| DatumErrorKind::IntOverflow(value).into())
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'de [u8]> {
        if n > self.input.len() {
            return Err(DatumErrorKind::UnexpectedEnd.into());
        }
        let (head, tail) = self.input.split_at(n);
        self.input = tail;
        Ok(head)
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let bytes = self.take(N)?;
        bytes.try_into().map_err(|_| DatumErrorKind::UnexpectedEnd.into())
    }

    fn boolean(&mut self) -> Result<bool> {
        match self.array::<1>()? {
            [0] => Ok(false),
            [1] => Ok(true),
            [other] => Err(DatumErrorKind::BadBoolean(other).into()),
        }
    }

    fn float(&mut self) -> Result<f32> {
        self.array().map(f32::from_le_bytes)
    }

    fn double(&mut self) -> Result<f64> {
        self.array().map(f64::from_le_bytes)
    }

    /// A length prefix, checked against the bytes left.
    #[inline]
    fn len(&mut self) -> Result<usize> {
        let len = self.long()?;
        let remaining = self.input.len();
        match usize::try_from(len) {
            Ok(n) if n <= remaining => Ok(n),
            _ if len < 0 => Err(DatumErrorKind::NegativeLength(len).into()),
            _ => Err(DatumErrorKind::LengthPastEnd { len, remaining }.into()),
        }
    }

    #[inline]
    fn bytes(&mut self) -> Result<&'de [u8]> {
        let len = self.len()?;
        self.take(len)
    }

    #[inline]
    fn str(&mut self) -> Result<&'de str> {
        std::str::from_utf8(self.bytes()?).map_err(|_| DatumErrorKind::InvalidUtf8.into())
    }

    /// A `uuid`: 16 raw bytes or its text form (as apache-avro reads it).
    fn uuid(&mut self) -> Result<uuid::Uuid> {
        let bytes = self.bytes()?;
        let parsed = if bytes.len() == 16 {
            uuid::Uuid::from_slice(bytes)
        } else {
            let text = std::str::from_utf8(bytes).map_err(|_| DatumErrorKind::InvalidUtf8)?;
            uuid::Uuid::parse_str(text)
        };
        parsed.map_err(|e| DatumErrorKind::InvalidUuid(e.to_string()).into())
    }

    /// The bytes of a byte-like schema (bytes, fixed, decimal, duration), `None` for other kinds.
    fn raw_bytes(&mut self, schema: &'de Schema) -> Result<Option<&'de [u8]>> {
        Ok(Some(match schema {
            Schema::Bytes | Schema::BigDecimal => self.bytes()?,
            Schema::Fixed(fixed) => self.take(fixed.size)?,
            Schema::Duration => self.take(12)?,
            Schema::Decimal(decimal) => match self.names.resolve(&decimal.inner)? {
                Schema::Fixed(fixed) => self.take(fixed.size)?,
                _ => self.bytes()?,
            },
            _ => return Ok(None),
        }))
    }

    fn symbol(&mut self, schema: &'de EnumSchema) -> Result<&'de str> {
        let index = self.long()?;
        usize::try_from(index)
            .ok()
            .and_then(|i| schema.symbols.get(i))
            .map(String::as_str)
            .ok_or_else(|| DatumErrorKind::EnumIndex { index, symbols: schema.symbols.len() }.into())
    }

    /// Reads a union's branch index; returns the index and the branch's schema.
    #[inline]
    fn branch(&mut self, union: &'de UnionSchema) -> Result<(usize, &'de Schema)> {
        let index = self.long()?;
        let variants = union.variants();
        usize::try_from(index)
            .ok()
            .and_then(|i| Some((i, variants.get(i)?)))
            .ok_or_else(|| DatumErrorKind::UnionIndex { index, branches: variants.len() }.into())
    }

    /// Reads the item count of the next array or map block (0 ends the value). A negative count
    /// is followed by the block's size in bytes, which is not needed here. Every item takes at
    /// least a byte, so a count past the bytes left is refused, unless the items are of a
    /// zero-byte type (`null`, an empty record): such counts draw on a per-message budget.
    fn block_count(&mut self, items: &'de Schema, keyed: bool) -> Result<usize> {
        let raw = self.long()?;
        if raw < 0 {
            self.long()?;
        }
        let count = raw.unsigned_abs();
        let remaining = self.input.len();
        let fits = count <= remaining as u64 || (!keyed && min_size(items, &self.names, 0) == 0 && self.spend(count));
        match usize::try_from(count) {
            Ok(count) if fits => Ok(count),
            _ => Err(DatumErrorKind::TooManyItems { count, remaining }.into()),
        }
    }

    /// Takes `count` zero-byte items from the budget, if it has them.
    fn spend(&mut self, count: u64) -> bool {
        match self.zero_size_budget.checked_sub(count) {
            Some(left) => {
                self.zero_size_budget = left;
                true
            }
            None => false,
        }
    }

    fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(DatumErrorKind::TooDeep(MAX_DEPTH).into());
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// Reads past one value of `schema`, checking it as thoroughly as reading it would.
    fn skip(&mut self, schema: &'de Schema) -> Result<()> {
        let schema = self.names.resolve(schema)?;
        match schema {
            Schema::Null => {}
            Schema::Boolean => {
                self.boolean()?;
            }
            Schema::Int | Schema::Date | Schema::TimeMillis => {
                self.int()?;
            }
            Schema::Long
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => {
                self.long()?;
            }
            Schema::Float => {
                self.take(4)?;
            }
            Schema::Double => {
                self.take(8)?;
            }
            Schema::String => {
                self.str()?;
            }
            Schema::Uuid => {
                self.uuid()?;
            }
            Schema::Enum(e) => {
                self.symbol(e)?;
            }
            Schema::Union(u) => {
                let (_, branch) = self.branch(u)?;
                self.skip(branch)?;
            }
            Schema::Record(record) => {
                self.enter()?;
                for field in &record.fields {
                    self.skip(&field.schema).map_err(|e| e.at_field(&field.name))?;
                }
                self.leave();
            }
            Schema::Array(array) => self.skip_blocks(&array.items, false)?,
            Schema::Map(map) => self.skip_blocks(&map.types, true)?,
            other => {
                if self.raw_bytes(other)?.is_none() {
                    return Err(DatumError::mismatch("a value to skip", other));
                }
            }
        }
        Ok(())
    }

    fn skip_blocks(&mut self, items: &'de Schema, keyed: bool) -> Result<()> {
        self.enter()?;
        loop {
            let count = self.block_count(items, keyed)?;
            if count == 0 {
                break;
            }
            for _ in 0..count {
                if keyed {
                    self.str()?;
                }
                self.skip(items)?;
            }
        }
        self.leave();
        Ok(())
    }
}

/// The fewest bytes a value of `schema` can take (0 when unknown): block counts of items that
/// can take no bytes at all are checked against a budget instead of the bytes left.
fn min_size<'s>(schema: &'s Schema, names: &Names<'s>, depth: usize) -> usize {
    let Ok(schema) = names.resolve(schema) else { return 0 };
    match schema {
        Schema::Null => 0,
        Schema::Float => 4,
        Schema::Double => 8,
        Schema::Fixed(fixed) => fixed.size,
        Schema::Duration => 12,
        Schema::Decimal(decimal) => min_size(&decimal.inner, names, depth + 1),
        Schema::Record(record) if depth < 8 => record
            .fields
            .iter()
            .fold(0usize, |sum, field| sum.saturating_add(min_size(&field.schema, names, depth + 1))),
        Schema::Record(_) => 0,
        _ => 1,
    }
}
