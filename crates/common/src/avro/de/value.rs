//! The `serde::Deserializer` for one value of a schema.
//!
//! `deserialize_any` follows the schema alone (the schema makes Avro self-describing); the typed
//! entry points only differ where the target type asks for something the schema can give in more
//! than one way (an option from a union, an enum from a symbol or a union branch, a string from
//! bytes). A union is otherwise transparent: its branch is read and the request passed on.

use apache_avro::schema::{ArraySchema, MapSchema, RecordSchema};
use apache_avro::Schema;
use serde::de::value::BorrowedStrDeserializer;
use serde::de::{self, Visitor};

use super::access::{ArrayItems, MapEntries, RecordFields, TaggedRecord, UnionVariant, UnitVariant};
use super::{Decoder, Result};
use crate::avro::error::{DatumError, DatumErrorKind};

pub(crate) struct ValueDe<'a, 'de> {
    dec: &'a mut Decoder<'de>,
    schema: &'de Schema,
}

impl<'a, 'de> ValueDe<'a, 'de> {
    pub(crate) fn new(dec: &'a mut Decoder<'de>, schema: &'de Schema) -> Self {
        Self { dec, schema }
    }

    #[inline]
    fn resolved(&self) -> Result<&'de Schema> {
        self.dec.names.resolve(self.schema)
    }

    fn array<V: Visitor<'de>>(self, schema: &'de ArraySchema, visitor: V) -> Result<V::Value> {
        self.dec.enter()?;
        let mut items = ArrayItems::new(self.dec, &schema.items)?;
        let value = visitor.visit_seq(&mut items)?;
        items.finish()?;
        Ok(value)
    }

    fn map<V: Visitor<'de>>(self, schema: &'de MapSchema, visitor: V) -> Result<V::Value> {
        self.dec.enter()?;
        let mut entries = MapEntries::new(self.dec, &schema.types)?;
        let value = visitor.visit_map(&mut entries)?;
        entries.finish()?;
        Ok(value)
    }

    fn record<V: Visitor<'de>>(self, schema: &'de RecordSchema, visitor: V, named: bool) -> Result<V::Value> {
        self.dec.enter()?;
        let mut fields = RecordFields::new(self.dec, &schema.fields);
        let value = if named { visitor.visit_map(&mut fields)? } else { visitor.visit_seq(&mut fields)? };
        fields.finish()?;
        Ok(value)
    }
}

impl<'de> de::Deserializer<'de> for ValueDe<'_, 'de> {
    type Error = DatumError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let schema = self.resolved()?;
        match schema {
            Schema::Null => visitor.visit_unit(),
            Schema::Boolean => visitor.visit_bool(self.dec.boolean()?),
            Schema::Int | Schema::Date | Schema::TimeMillis => visitor.visit_i32(self.dec.int()?),
            Schema::Long
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => visitor.visit_i64(self.dec.long()?),
            Schema::Float => visitor.visit_f32(self.dec.float()?),
            Schema::Double => visitor.visit_f64(self.dec.double()?),
            Schema::String => visitor.visit_borrowed_str(self.dec.str()?),
            Schema::Uuid => visitor.visit_str(&self.dec.uuid()?.to_string()),
            Schema::Enum(e) => visitor.visit_borrowed_str(self.dec.symbol(e)?),
            Schema::Array(array) => self.array(array, visitor),
            Schema::Map(map) => self.map(map, visitor),
            Schema::Record(record) => self.record(record, visitor, true),
            Schema::Union(union) => {
                let (_, branch) = self.dec.branch(union)?;
                ValueDe::new(self.dec, branch).deserialize_any(visitor)
            }
            other => match self.dec.raw_bytes(other)? {
                Some(bytes) => visitor.visit_borrowed_bytes(bytes),
                None => Err(DatumError::mismatch("a readable value", other)),
            },
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.resolved()? {
            Schema::String => visitor.visit_borrowed_str(self.dec.str()?),
            Schema::Union(union) => {
                let (_, branch) = self.dec.branch(union)?;
                ValueDe::new(self.dec, branch).deserialize_str(visitor)
            }
            schema @ (Schema::Bytes | Schema::Fixed(_)) => match self.dec.raw_bytes(schema)? {
                Some(bytes) => {
                    visitor.visit_borrowed_str(std::str::from_utf8(bytes).map_err(|_| DatumErrorKind::InvalidUtf8)?)
                }
                None => Err(DatumError::mismatch("a string", schema)),
            },
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.resolved()? {
            Schema::String => visitor.visit_borrowed_bytes(self.dec.str()?.as_bytes()),
            Schema::Uuid => visitor.visit_bytes(self.dec.uuid()?.as_bytes()),
            Schema::Union(union) => {
                let (_, branch) = self.dec.branch(union)?;
                ValueDe::new(self.dec, branch).deserialize_bytes(visitor)
            }
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.resolved()? {
            Schema::Null => visitor.visit_none(),
            Schema::Union(union) => match self.dec.branch(union)? {
                (_, Schema::Null) => visitor.visit_none(),
                (_, branch) => visitor.visit_some(ValueDe::new(self.dec, branch)),
            },
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.resolved()? {
            Schema::Null => visitor.visit_unit(),
            Schema::Record(record) if record.fields.is_empty() => visitor.visit_unit(),
            Schema::Union(union) => {
                let (_, branch) = self.dec.branch(union)?;
                ValueDe::new(self.dec, branch).deserialize_unit(visitor)
            }
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.resolved()? {
            Schema::Array(array) => self.array(array, visitor),
            Schema::Record(record) => self.record(record, visitor, false),
            Schema::Union(union) => {
                let (_, branch) = self.dec.branch(union)?;
                ValueDe::new(self.dec, branch).deserialize_seq(visitor)
            }
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.resolved()? {
            Schema::Union(union) => {
                let (_, branch) = self.dec.branch(union)?;
                ValueDe::new(self.dec, branch).deserialize_map(visitor)
            }
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        match self.resolved()? {
            Schema::Record(record) => self.record(record, visitor, true),
            Schema::Union(union) => {
                let (_, branch) = self.dec.branch(union)?;
                ValueDe::new(self.dec, branch).deserialize_struct(name, fields, visitor)
            }
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        match self.resolved()? {
            Schema::Enum(e) => visitor.visit_enum(UnitVariant(self.dec.symbol(e)?)),
            Schema::String => visitor.visit_enum(UnitVariant(self.dec.str()?)),
            // A union of the enum's variants, in order: the branch index picks the variant.
            Schema::Union(union) => {
                let (index, branch) = self.dec.branch(union)?;
                let name = variants.get(index).ok_or(DatumErrorKind::UnionIndex {
                    index: i64::try_from(index).unwrap_or(i64::MAX),
                    branches: variants.len(),
                })?;
                visitor.visit_enum(UnionVariant::new(self.dec, name, branch))
            }
            // A record whose first field, `type`, names the variant and whose second holds it.
            Schema::Record(record) => {
                self.dec.enter()?;
                let tagged = TaggedRecord::new(self.dec, &record.fields)?;
                let value = visitor.visit_enum(tagged)?;
                self.dec.leave();
                Ok(value)
            }
            other => Err(DatumError::mismatch("an enum", other)),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.dec.skip(self.schema)?;
        visitor.visit_unit()
    }

    fn is_human_readable(&self) -> bool {
        // As apache-avro's default: types like `Uuid` pick their compact form.
        false
    }
}

/// A field name or map key handed to a visitor.
pub(super) fn key<'de>(name: &'de str) -> BorrowedStrDeserializer<'de, DatumError> {
    BorrowedStrDeserializer::new(name)
}
