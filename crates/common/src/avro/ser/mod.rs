//! serde → Avro binary, straight into the output buffer, driven by the schema.
//!
//! Each `serialize_*` call is checked against the schema node it lands on. Records take struct
//! fields by position while they come in schema order (one string compare per field) and by
//! name, buffered, once they do not; missing fields take their schema default. A union takes the
//! first branch that fits the call, as apache-avro picks it, so both write the same bytes;
//! `Option<T>` against `["null", T]` (either order) writes the null branch or `T`'s. Enums are
//! written by symbol name. Anything that does not fit is an error naming the field path; nothing
//! is ever written in a shape the schema does not describe.

mod compound;
mod primitives;

use apache_avro::schema::{RecordSchema, UnionSchema};
use apache_avro::Schema;
use serde::ser::{self, Serialize};

use super::error::{DatumError, DatumErrorKind};
use super::names::Names;
use super::varint::write_long;
use compound::{EntrySer, MapSer, SeqSer, StructSer, TupleSer};
use primitives::{is_integer, is_unit, symbol_index, write_bytes, write_decimal_fixed, write_fixed};

type Result<T> = std::result::Result<T, DatumError>;

/// Map keys are written as this schema.
static STRING: Schema = Schema::String;

/// Appends `value`, written as `schema`, to `out`.
pub(crate) fn to_vec<T: Serialize + ?Sized>(out: &mut Vec<u8>, schema: &Schema, value: &T) -> Result<()> {
    let names = Names::new(schema);
    value.serialize(ValueSer::new(out, &names, schema))
}

/// Serializes one value of `schema` into `out`.
pub(crate) struct ValueSer<'a, 's> {
    out: &'a mut Vec<u8>,
    names: &'a Names<'s>,
    schema: &'s Schema,
}

impl<'a, 's> ValueSer<'a, 's> {
    pub(crate) fn new(out: &'a mut Vec<u8>, names: &'a Names<'s>, schema: &'s Schema) -> Self {
        Self { out, names, schema }
    }

    fn resolved(&self) -> Result<&'s Schema> {
        self.names.resolve(self.schema)
    }

    fn with(self, schema: &'s Schema) -> Self {
        Self { schema, ..self }
    }

    /// Writes the index of branch `index` and returns the serializer for it.
    fn enter_branch(self, union: &'s UnionSchema, index: usize) -> Result<Self> {
        let branch =
            union.variants().get(index).ok_or_else(|| DatumError::mismatch("a branch for the variant", self.schema))?;
        let branch = self.names.resolve(branch)?;
        write_long(self.out, index as i64);
        Ok(self.with(branch))
    }

    /// Writes the index of the first branch of `union` that `fits` and returns its serializer.
    fn branch(self, union: &'s UnionSchema, expected: &'static str, fits: impl Fn(&Schema) -> bool) -> Result<Self> {
        for (index, branch) in union.variants().iter().enumerate() {
            if fits(self.names.resolve(branch)?) {
                return self.enter_branch(union, index);
            }
        }
        Err(DatumError::mismatch(expected, self.schema))
    }

    /// The common cases inline (an `int` or `long` field); the rest out of line.
    #[inline]
    fn integer(self, value: i64) -> Result<()> {
        match self.schema {
            Schema::Long | Schema::TimestampMillis | Schema::TimestampMicros => {
                write_long(self.out, value);
                Ok(())
            }
            Schema::Int if i32::try_from(value).is_ok() => {
                write_long(self.out, value);
                Ok(())
            }
            _ => self.any_integer(value),
        }
    }

    #[inline(never)]
    fn any_integer(self, value: i64) -> Result<()> {
        match self.resolved()? {
            Schema::Int | Schema::Date | Schema::TimeMillis => {
                let value = i32::try_from(value).map_err(|_| DatumErrorKind::IntOverflow(value))?;
                write_long(self.out, i64::from(value));
                Ok(())
            }
            schema if is_integer(schema) => {
                write_long(self.out, value);
                Ok(())
            }
            Schema::Union(union) => self.branch(union, "an int or long", is_integer)?.any_integer(value),
            other => Err(DatumError::mismatch("an int or long", other)),
        }
    }

    fn unsigned(self, value: u64) -> Result<()> {
        let signed = i64::try_from(value)
            .map_err(|_| <DatumError as ser::Error>::custom(format!("{value} does not fit an Avro long")))?;
        self.integer(signed)
    }

    #[inline(never)]
    fn any_str(self, v: &str) -> Result<()> {
        match self.resolved()? {
            Schema::String | Schema::Bytes | Schema::Uuid => write_bytes(self.out, v.as_bytes()),
            Schema::Fixed(fixed) => write_fixed(self.out, fixed.size, v.as_bytes())?,
            Schema::Enum(e) => {
                let index = symbol_index(&e.symbols, v).ok_or_else(|| DatumErrorKind::UnknownSymbol(v.to_owned()))?;
                write_long(self.out, index as i64);
            }
            Schema::Union(union) => {
                let fits = |s: &Schema| matches!(s, Schema::String | Schema::Bytes | Schema::Uuid | Schema::Fixed(_));
                return self.branch(union, "a string", fits)?.any_str(v);
            }
            other => return Err(DatumError::mismatch("a string", other)),
        }
        Ok(())
    }

    /// A record for a struct named `name` with `len` fields: among union branches, the record of
    /// that name, else the record of that many fields, else the only record.
    #[inline(never)]
    fn record_branch(self, name: &str, len: usize) -> Result<(Self, &'s RecordSchema)> {
        let union = match self.resolved()? {
            Schema::Record(record) => return Ok((self, record)),
            Schema::Union(union) => union,
            other => return Err(DatumError::mismatch("a record", other)),
        };
        let mut records = Vec::new();
        for (index, branch) in union.variants().iter().enumerate() {
            if let Schema::Record(record) = self.names.resolve(branch)? {
                records.push((index, record));
            }
        }
        let chosen = records
            .iter()
            .find(|(_, r)| r.name.name == name)
            .or_else(|| records.iter().find(|(_, r)| r.fields.len() == len))
            .or_else(|| records.first().filter(|_| records.len() == 1));
        match chosen {
            Some(&(index, record)) => Ok((self.enter_branch(union, index)?, record)),
            None => Err(DatumError::mismatch("a record", self.schema)),
        }
    }
}

impl<'a, 's> ser::Serializer for ValueSer<'a, 's> {
    type Ok = ();
    type Error = DatumError;
    type SerializeSeq = SeqSer<'a, 's>;
    type SerializeTuple = TupleSer<'a, 's>;
    type SerializeTupleStruct = TupleSer<'a, 's>;
    type SerializeTupleVariant = TupleSer<'a, 's>;
    type SerializeMap = MapSer<'a, 's>;
    type SerializeStruct = StructSer<'a, 's>;
    type SerializeStructVariant = StructSer<'a, 's>;

    fn serialize_bool(self, v: bool) -> Result<()> {
        match self.resolved()? {
            Schema::Boolean => {
                self.out.push(u8::from(v));
                Ok(())
            }
            Schema::Union(union) => {
                self.branch(union, "a boolean", |s| matches!(s, Schema::Boolean))?.serialize_bool(v)
            }
            other => Err(DatumError::mismatch("a boolean", other)),
        }
    }

    fn serialize_i8(self, v: i8) -> Result<()> {
        self.integer(i64::from(v))
    }

    fn serialize_i16(self, v: i16) -> Result<()> {
        self.integer(i64::from(v))
    }

    fn serialize_i32(self, v: i32) -> Result<()> {
        self.integer(i64::from(v))
    }

    fn serialize_i64(self, v: i64) -> Result<()> {
        self.integer(v)
    }

    fn serialize_i128(self, v: i128) -> Result<()> {
        let v = i64::try_from(v)
            .map_err(|_| <DatumError as ser::Error>::custom(format!("{v} does not fit an Avro long")))?;
        self.integer(v)
    }

    fn serialize_u8(self, v: u8) -> Result<()> {
        match self.resolved()? {
            // apache-avro writes a lone u8 into `bytes` as a one-byte value.
            Schema::Bytes => {
                write_bytes(self.out, &[v]);
                Ok(())
            }
            Schema::Union(union) => self
                .branch(union, "an int, long or bytes", |s| is_integer(s) || matches!(s, Schema::Bytes))?
                .serialize_u8(v),
            _ => self.integer(i64::from(v)),
        }
    }

    fn serialize_u16(self, v: u16) -> Result<()> {
        self.integer(i64::from(v))
    }

    fn serialize_u32(self, v: u32) -> Result<()> {
        self.integer(i64::from(v))
    }

    fn serialize_u64(self, v: u64) -> Result<()> {
        self.unsigned(v)
    }

    fn serialize_u128(self, v: u128) -> Result<()> {
        let v = u64::try_from(v)
            .map_err(|_| <DatumError as ser::Error>::custom(format!("{v} does not fit an Avro long")))?;
        self.unsigned(v)
    }

    fn serialize_f32(self, v: f32) -> Result<()> {
        match self.resolved()? {
            Schema::Float => self.out.extend_from_slice(&v.to_le_bytes()),
            Schema::Double => self.out.extend_from_slice(&f64::from(v).to_le_bytes()),
            Schema::Union(union) => {
                return self
                    .branch(union, "a float or double", |s| matches!(s, Schema::Float | Schema::Double))?
                    .serialize_f32(v)
            }
            other => return Err(DatumError::mismatch("a float or double", other)),
        }
        Ok(())
    }

    fn serialize_f64(self, v: f64) -> Result<()> {
        match self.resolved()? {
            Schema::Float => self.out.extend_from_slice(&(v as f32).to_le_bytes()),
            Schema::Double => self.out.extend_from_slice(&v.to_le_bytes()),
            Schema::Union(union) => {
                return self
                    .branch(union, "a float or double", |s| matches!(s, Schema::Float | Schema::Double))?
                    .serialize_f64(v)
            }
            other => return Err(DatumError::mismatch("a float or double", other)),
        }
        Ok(())
    }

    fn serialize_char(self, v: char) -> Result<()> {
        match self.resolved()? {
            Schema::String | Schema::Bytes => {
                write_bytes(self.out, v.encode_utf8(&mut [0u8; 4]).as_bytes());
                Ok(())
            }
            Schema::Union(union) => {
                self.branch(union, "a string", |s| matches!(s, Schema::String | Schema::Bytes))?.serialize_char(v)
            }
            other => Err(DatumError::mismatch("a string", other)),
        }
    }

    #[inline]
    fn serialize_str(self, v: &str) -> Result<()> {
        if let Schema::String = self.schema {
            write_bytes(self.out, v.as_bytes());
            return Ok(());
        }
        self.any_str(v)
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<()> {
        match self.resolved()? {
            Schema::String => {
                let text = std::str::from_utf8(v).map_err(|_| DatumErrorKind::InvalidUtf8)?;
                write_bytes(self.out, text.as_bytes());
            }
            Schema::Bytes | Schema::BigDecimal | Schema::Uuid => write_bytes(self.out, v),
            Schema::Fixed(fixed) => write_fixed(self.out, fixed.size, v)?,
            Schema::Duration => write_fixed(self.out, 12, v)?,
            Schema::Decimal(decimal) => match self.names.resolve(&decimal.inner)? {
                Schema::Fixed(fixed) => write_decimal_fixed(self.out, fixed.size, v)?,
                _ => write_bytes(self.out, v),
            },
            Schema::Union(union) => {
                let fits = |s: &Schema| {
                    matches!(
                        s,
                        Schema::String
                            | Schema::Bytes
                            | Schema::Uuid
                            | Schema::BigDecimal
                            | Schema::Fixed(_)
                            | Schema::Duration
                            | Schema::Decimal(_)
                    )
                };
                return self.branch(union, "bytes", fits)?.serialize_bytes(v);
            }
            other => return Err(DatumError::mismatch("bytes", other)),
        }
        Ok(())
    }

    fn serialize_none(self) -> Result<()> {
        match self.resolved()? {
            Schema::Null => Ok(()),
            Schema::Union(union) => self.branch(union, "null", |s| matches!(s, Schema::Null)).map(drop),
            other => Err(DatumError::mismatch("null (for None)", other)),
        }
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<()> {
        if let Schema::Union(union) = self.resolved()? {
            let mut others = union.variants().iter().enumerate().filter(|(_, s)| !matches!(s, Schema::Null));
            if let (Some((index, _)), None) = (others.next(), others.next()) {
                return value.serialize(self.enter_branch(union, index)?);
            }
        }
        // Not a union, or one with several non-null branches: the value picks its own branch.
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<()> {
        self.serialize_none()
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<()> {
        match self.resolved()? {
            schema if is_unit(schema) => Ok(()),
            Schema::Union(union) => self.branch(union, "null or an empty record", is_unit).map(drop),
            other => Err(DatumError::mismatch("null or an empty record", other)),
        }
    }

    fn serialize_unit_variant(self, _name: &'static str, index: u32, variant: &'static str) -> Result<()> {
        match self.resolved()? {
            Schema::Enum(e) => {
                let symbol = symbol_index(&e.symbols, variant)
                    .ok_or_else(|| DatumErrorKind::UnknownSymbol(variant.to_owned()))?;
                write_long(self.out, symbol as i64);
                Ok(())
            }
            Schema::String => {
                write_bytes(self.out, variant.as_bytes());
                Ok(())
            }
            Schema::Union(union) => {
                // The branch of an enum with this symbol; failing that, a union of the enum's
                // variants in order, where the variant's own branch must be null.
                let mut chosen = index as usize;
                for (i, branch) in union.variants().iter().enumerate() {
                    if matches!(self.names.resolve(branch)?, Schema::Enum(e) if symbol_index(&e.symbols, variant).is_some())
                    {
                        chosen = i;
                        break;
                    }
                }
                let branch = self.enter_branch(union, chosen)?;
                match branch.schema {
                    Schema::Enum(e) => {
                        let symbol = symbol_index(&e.symbols, variant)
                            .ok_or_else(|| DatumErrorKind::UnknownSymbol(variant.to_owned()))?;
                        write_long(branch.out, symbol as i64);
                        Ok(())
                    }
                    schema if is_unit(schema) => Ok(()),
                    other => Err(DatumError::mismatch("an enum or null branch", other)),
                }
            }
            other => Err(DatumError::mismatch("an enum", other)),
        }
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _name: &'static str, value: &T) -> Result<()> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
        value: &T,
    ) -> Result<()> {
        match self.resolved()? {
            Schema::Union(union) => value.serialize(self.enter_branch(union, index as usize)?),
            other => Err(DatumError::mismatch("a union (one branch per enum variant)", other)),
        }
    }

    #[inline]
    fn serialize_seq(self, len: Option<usize>) -> Result<SeqSer<'a, 's>> {
        if let Schema::Array(array) = self.schema {
            return Ok(SeqSer::new(self.out, self.names, &array.items, len));
        }
        match self.resolved()? {
            Schema::Array(array) => Ok(SeqSer::new(self.out, self.names, &array.items, len)),
            Schema::Union(union) => {
                self.branch(union, "an array", |s| matches!(s, Schema::Array(_)))?.serialize_seq(len)
            }
            other => Err(DatumError::mismatch("an array", other)),
        }
    }

    fn serialize_tuple(self, len: usize) -> Result<TupleSer<'a, 's>> {
        self.serialize_tuple_struct("", len)
    }

    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<TupleSer<'a, 's>> {
        match self.resolved()? {
            Schema::Array(array) => Ok(TupleSer::Array(SeqSer::new(self.out, self.names, &array.items, Some(len)))),
            Schema::Record(record) => Ok(TupleSer::Record(StructSer::new(self.out, self.names, record))),
            Schema::Union(union) => {
                let fits = |s: &Schema| match s {
                    Schema::Array(_) => true,
                    Schema::Record(record) => record.fields.len() == len,
                    _ => false,
                };
                self.branch(union, "an array or record", fits)?.serialize_tuple_struct("", len)
            }
            other => Err(DatumError::mismatch("an array or record", other)),
        }
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<TupleSer<'a, 's>> {
        match self.resolved()? {
            Schema::Union(union) => self.enter_branch(union, index as usize)?.serialize_tuple_struct(variant, len),
            other => Err(DatumError::mismatch("a union (one branch per enum variant)", other)),
        }
    }

    fn serialize_map(self, len: Option<usize>) -> Result<MapSer<'a, 's>> {
        match self.resolved()? {
            Schema::Map(map) => Ok(MapSer::Map(EntrySer::new(self.out, self.names, &map.types, len))),
            Schema::Record(record) => Ok(MapSer::Record(StructSer::new(self.out, self.names, record))),
            Schema::Union(union) => self.branch(union, "a map", |s| matches!(s, Schema::Map(_)))?.serialize_map(len),
            other => Err(DatumError::mismatch("a map or record", other)),
        }
    }

    #[inline]
    fn serialize_struct(self, name: &'static str, len: usize) -> Result<StructSer<'a, 's>> {
        if let Schema::Record(record) = self.schema {
            return Ok(StructSer::new(self.out, self.names, record));
        }
        let (ser, record) = self.record_branch(name, len)?;
        Ok(StructSer::new(ser.out, ser.names, record))
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<StructSer<'a, 's>> {
        match self.resolved()? {
            Schema::Union(union) => self.enter_branch(union, index as usize)?.serialize_struct(variant, len),
            other => Err(DatumError::mismatch("a union (one branch per enum variant)", other)),
        }
    }

    fn is_human_readable(&self) -> bool {
        // As apache-avro's default: types like `Uuid` write their compact form.
        false
    }
}
