//! The serde access types: array items and map entries read block by block, record fields as a
//! map (by name) or a sequence (by position), and the ways an Avro value can name an enum variant.

use apache_avro::schema::RecordField;
use apache_avro::Schema;
use serde::de::{self, DeserializeSeed, Deserializer as _, Unexpected, Visitor};

use super::value::{key, ValueDe};
use super::{Decoder, Result};
use crate::avro::error::{DatumError, DatumErrorKind};

/// The blocks of an array or map: each a count (0 ends the value), then that many items.
struct Blocks<'de> {
    items: &'de Schema,
    keyed: bool,
    left: usize,
    done: bool,
    index: usize,
}

impl<'de> Blocks<'de> {
    fn new(dec: &mut Decoder<'de>, items: &'de Schema, keyed: bool) -> Result<Self> {
        let left = dec.block_count(items, keyed)?;
        Ok(Self { items, keyed, left, done: left == 0, index: 0 })
    }

    /// Moves to the next item: `Some(its index)`, or `None` at the end of the value.
    #[inline]
    fn next(&mut self, dec: &mut Decoder<'de>) -> Result<Option<usize>> {
        if self.left == 0 {
            if self.done {
                return Ok(None);
            }
            self.left = dec.block_count(self.items, self.keyed)?;
            if self.left == 0 {
                self.done = true;
                return Ok(None);
            }
        }
        self.left -= 1;
        self.index += 1;
        Ok(Some(self.index - 1))
    }

    /// After the visitor: it must have taken every item (else the bytes and the type disagree).
    fn finish(&mut self, dec: &mut Decoder<'de>) -> Result<()> {
        if !self.done && (self.left > 0 || dec.block_count(self.items, self.keyed)? > 0) {
            return Err(DatumErrorKind::TrailingItems.into());
        }
        dec.leave();
        Ok(())
    }
}

pub(super) struct ArrayItems<'a, 'de> {
    dec: &'a mut Decoder<'de>,
    items: &'de Schema,
    blocks: Blocks<'de>,
}

impl<'a, 'de> ArrayItems<'a, 'de> {
    pub(super) fn new(dec: &'a mut Decoder<'de>, items: &'de Schema) -> Result<Self> {
        let blocks = Blocks::new(dec, items, false)?;
        Ok(Self { dec, items, blocks })
    }

    pub(super) fn finish(&mut self) -> Result<()> {
        self.blocks.finish(self.dec)
    }
}

impl<'de> de::SeqAccess<'de> for ArrayItems<'_, 'de> {
    type Error = DatumError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        let Some(index) = self.blocks.next(self.dec)? else { return Ok(None) };
        seed.deserialize(ValueDe::new(self.dec, self.items)).map(Some).map_err(|e| e.at_index(index))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.blocks.left)
    }
}

pub(super) struct MapEntries<'a, 'de> {
    dec: &'a mut Decoder<'de>,
    values: &'de Schema,
    blocks: Blocks<'de>,
    key: &'de str,
}

impl<'a, 'de> MapEntries<'a, 'de> {
    pub(super) fn new(dec: &'a mut Decoder<'de>, values: &'de Schema) -> Result<Self> {
        let blocks = Blocks::new(dec, values, true)?;
        Ok(Self { dec, values, blocks, key: "" })
    }

    pub(super) fn finish(&mut self) -> Result<()> {
        self.blocks.finish(self.dec)
    }
}

impl<'de> de::MapAccess<'de> for MapEntries<'_, 'de> {
    type Error = DatumError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        let Some(index) = self.blocks.next(self.dec)? else { return Ok(None) };
        self.key = self.dec.str().map_err(|e| e.at_index(index))?;
        seed.deserialize(key(self.key)).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        seed.deserialize(ValueDe::new(self.dec, self.values)).map_err(|e| e.at_key(self.key))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.blocks.left)
    }
}

/// A record's fields, in schema order.
pub(super) struct RecordFields<'a, 'de> {
    dec: &'a mut Decoder<'de>,
    fields: &'de [RecordField],
    next: usize,
}

impl<'a, 'de> RecordFields<'a, 'de> {
    pub(super) fn new(dec: &'a mut Decoder<'de>, fields: &'de [RecordField]) -> Self {
        Self { dec, fields, next: 0 }
    }

    pub(super) fn finish(&mut self) -> Result<()> {
        if self.next < self.fields.len() {
            return Err(DatumErrorKind::TrailingItems.into());
        }
        self.dec.leave();
        Ok(())
    }

    fn value<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        let Some(field) = self.fields.get(self.next) else { return Ok(None) };
        self.next += 1;
        seed.deserialize(ValueDe::new(self.dec, &field.schema)).map(Some).map_err(|e| e.at_field(&field.name))
    }
}

impl<'de> de::MapAccess<'de> for RecordFields<'_, 'de> {
    type Error = DatumError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        match self.fields.get(self.next) {
            Some(field) => seed.deserialize(key(&field.name)).map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        self.value(seed)?.ok_or_else(|| de::Error::custom("a record value was asked for after the last field"))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.fields.len().saturating_sub(self.next))
    }
}

impl<'de> de::SeqAccess<'de> for RecordFields<'_, 'de> {
    type Error = DatumError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        self.value(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.fields.len().saturating_sub(self.next))
    }
}

/// An enum symbol (or a string): a unit variant by name.
pub(super) struct UnitVariant<'de>(pub(super) &'de str);

impl<'de> de::EnumAccess<'de> for UnitVariant<'de> {
    type Error = DatumError;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self)> {
        Ok((seed.deserialize(key(self.0))?, self))
    }
}

impl<'de> de::VariantAccess<'de> for UnitVariant<'de> {
    type Error = DatumError;

    fn unit_variant(self) -> Result<()> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, _seed: T) -> Result<T::Value> {
        Err(de::Error::invalid_type(Unexpected::UnitVariant, &"a newtype variant"))
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, _visitor: V) -> Result<V::Value> {
        Err(de::Error::invalid_type(Unexpected::UnitVariant, &"a tuple variant"))
    }

    fn struct_variant<V: Visitor<'de>>(self, _fields: &'static [&'static str], _visitor: V) -> Result<V::Value> {
        Err(de::Error::invalid_type(Unexpected::UnitVariant, &"a struct variant"))
    }
}

/// A union branch read as the variant at the same position of a Rust enum.
pub(super) struct UnionVariant<'a, 'de> {
    dec: &'a mut Decoder<'de>,
    name: &'static str,
    branch: &'de Schema,
}

impl<'a, 'de> UnionVariant<'a, 'de> {
    pub(super) fn new(dec: &'a mut Decoder<'de>, name: &'static str, branch: &'de Schema) -> Self {
        Self { dec, name, branch }
    }
}

impl<'a, 'de> de::EnumAccess<'de> for UnionVariant<'a, 'de> {
    type Error = DatumError;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self)> {
        Ok((seed.deserialize(key(self.name))?, self))
    }
}

impl<'de> de::VariantAccess<'de> for UnionVariant<'_, 'de> {
    type Error = DatumError;

    fn unit_variant(self) -> Result<()> {
        match self.dec.names.resolve(self.branch)? {
            Schema::Null => Ok(()),
            Schema::Record(record) if record.fields.is_empty() => Ok(()),
            other => Err(DatumError::mismatch("null (for a unit variant)", other)),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value> {
        seed.deserialize(ValueDe::new(self.dec, self.branch))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value> {
        ValueDe::new(self.dec, self.branch).deserialize_tuple(len, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(self, fields: &'static [&'static str], visitor: V) -> Result<V::Value> {
        ValueDe::new(self.dec, self.branch).deserialize_struct(self.name, fields, visitor)
    }
}

/// A record `{type, value, ...}`: `type` (a string or enum) names the variant, the next field
/// holds its content, any further fields are read past.
pub(super) struct TaggedRecord<'a, 'de> {
    dec: &'a mut Decoder<'de>,
    tag: &'de str,
    rest: &'de [RecordField],
}

impl<'a, 'de> TaggedRecord<'a, 'de> {
    pub(super) fn new(dec: &'a mut Decoder<'de>, fields: &'de [RecordField]) -> Result<Self> {
        let Some((first, rest)) = fields.split_first().filter(|(first, _)| first.name == "type") else {
            return Err(de::Error::custom("an enum from a record needs a first field named `type`"));
        };
        let tag = match dec.names.resolve(&first.schema)? {
            Schema::String => dec.str(),
            Schema::Enum(e) => dec.symbol(e),
            other => Err(DatumError::mismatch("a string or enum `type` field", other)),
        }
        .map_err(|e| e.at_field("type"))?;
        Ok(Self { dec, tag, rest })
    }

    /// Reads the content field with `read`, then past the fields after it.
    fn content<T>(self, read: impl FnOnce(ValueDe<'_, 'de>) -> Result<T>) -> Result<T> {
        let Some((field, more)) = self.rest.split_first() else {
            return Err(de::Error::custom("an enum record has no field after `type` to hold the variant"));
        };
        let value = read(ValueDe::new(self.dec, &field.schema)).map_err(|e| e.at_field(&field.name))?;
        for field in more {
            self.dec.skip(&field.schema).map_err(|e| e.at_field(&field.name))?;
        }
        Ok(value)
    }
}

impl<'a, 'de> de::EnumAccess<'de> for TaggedRecord<'a, 'de> {
    type Error = DatumError;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self)> {
        Ok((seed.deserialize(key(self.tag))?, self))
    }
}

impl<'de> de::VariantAccess<'de> for TaggedRecord<'_, 'de> {
    type Error = DatumError;

    fn unit_variant(self) -> Result<()> {
        for field in self.rest {
            self.dec.skip(&field.schema).map_err(|e| e.at_field(&field.name))?;
        }
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value> {
        self.content(|de| seed.deserialize(de))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value> {
        self.content(|de| de.deserialize_tuple(len, visitor))
    }

    fn struct_variant<V: Visitor<'de>>(self, fields: &'static [&'static str], visitor: V) -> Result<V::Value> {
        self.content(|de| de.deserialize_struct("", fields, visitor))
    }
}
