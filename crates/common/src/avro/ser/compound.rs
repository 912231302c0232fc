//! Arrays and maps (written in blocks) and records (fields in schema order, defaults for the
//! missing ones).

use apache_avro::schema::RecordSchema;
use apache_avro::Schema;
use serde::ser::{self, Serialize};

use super::{Result, ValueSer, STRING};
use crate::avro::error::{DatumError, DatumErrorKind};
use crate::avro::names::Names;
use crate::avro::varint::{read_long, write_long};

/// Items per block, as apache-avro writes them, so both give the same bytes.
const BLOCK_ITEMS: usize = 1025;

/// The item counts of an array or map. With the length known up front items go straight to the
/// output behind their block's count; otherwise each block is buffered until it is full.
struct Blocks<'a> {
    out: &'a mut Vec<u8>,
    announced: Option<usize>,
    given: usize,
    /// Known length: items left in the current block. Unknown: the current block's bytes.
    in_block: usize,
    buffer: Vec<u8>,
}

impl<'a> Blocks<'a> {
    fn new(out: &'a mut Vec<u8>, announced: Option<usize>) -> Self {
        Self { out, announced, given: 0, in_block: 0, buffer: Vec::new() }
    }

    /// Counts one more item; returns where its bytes go.
    #[inline]
    fn item(&mut self) -> Result<&mut Vec<u8>> {
        if self.announced.is_some() && self.in_block > 0 {
            self.given += 1;
            self.in_block -= 1;
            return Ok(&mut *self.out);
        }
        self.next_block()
    }

    /// [`Blocks::item`] at the start of a block (or without a known length).
    #[inline(never)]
    fn next_block(&mut self) -> Result<&mut Vec<u8>> {
        self.given += 1;
        match self.announced {
            Some(announced) => {
                let left = announced.checked_sub(self.given - 1).filter(|left| *left > 0);
                let left = left.ok_or(DatumErrorKind::LengthMismatch { announced, given: self.given })?;
                self.in_block = left.min(BLOCK_ITEMS) - 1;
                write_long(self.out, (self.in_block + 1) as i64);
                Ok(&mut *self.out)
            }
            None => {
                if self.in_block == BLOCK_ITEMS {
                    self.flush();
                }
                self.in_block += 1;
                Ok(&mut self.buffer)
            }
        }
    }

    /// Where the current item's bytes go (after [`Blocks::item`]).
    fn current(&mut self) -> &mut Vec<u8> {
        if self.announced.is_some() {
            &mut *self.out
        } else {
            &mut self.buffer
        }
    }

    fn flush(&mut self) {
        if self.in_block > 0 {
            write_long(self.out, self.in_block as i64);
            self.out.extend_from_slice(&self.buffer);
            self.buffer.clear();
            self.in_block = 0;
        }
    }

    fn end(mut self) -> Result<()> {
        match self.announced {
            Some(announced) if announced != self.given => {
                return Err(DatumErrorKind::LengthMismatch { announced, given: self.given }.into())
            }
            Some(_) => {}
            None => self.flush(),
        }
        self.out.push(0);
        Ok(())
    }
}

pub(crate) struct SeqSer<'a, 's> {
    blocks: Blocks<'a>,
    names: &'a Names<'s>,
    items: &'s Schema,
}

impl<'a, 's> SeqSer<'a, 's> {
    pub(super) fn new(out: &'a mut Vec<u8>, names: &'a Names<'s>, items: &'s Schema, len: Option<usize>) -> Self {
        Self { blocks: Blocks::new(out, len), names, items }
    }
}

impl ser::SerializeSeq for SeqSer<'_, '_> {
    type Ok = ();
    type Error = DatumError;

    #[inline]
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        let index = self.blocks.given;
        let out = self.blocks.item()?;
        value.serialize(ValueSer::new(out, self.names, self.items)).map_err(|e| e.at_index(index))
    }

    fn end(self) -> Result<()> {
        self.blocks.end()
    }
}

pub(crate) struct EntrySer<'a, 's> {
    blocks: Blocks<'a>,
    names: &'a Names<'s>,
    values: &'s Schema,
    /// Where the current key starts in the output, to name it in an error.
    key_at: usize,
}

impl<'a, 's> EntrySer<'a, 's> {
    pub(super) fn new(out: &'a mut Vec<u8>, names: &'a Names<'s>, values: &'s Schema, len: Option<usize>) -> Self {
        Self { blocks: Blocks::new(out, len), names, values, key_at: 0 }
    }
}

/// The string written at the front of `bytes`, if there is one.
fn read_key(mut bytes: &[u8]) -> Option<&str> {
    let len = usize::try_from(read_long(&mut bytes).ok()?).ok()?;
    std::str::from_utf8(bytes.get(..len)?).ok()
}

impl ser::SerializeMap for EntrySer<'_, '_> {
    type Ok = ();
    type Error = DatumError;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<()> {
        let index = self.blocks.given;
        let out = self.blocks.item()?;
        self.key_at = out.len();
        key.serialize(ValueSer::new(out, self.names, &STRING)).map_err(|e| e.at_index(index))
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        let out = self.blocks.current();
        let written = value.serialize(ValueSer::new(&mut *out, self.names, self.values));
        written.map_err(|e| {
            let key = out.get(self.key_at..).and_then(read_key).unwrap_or("?");
            e.at_key(key)
        })
    }

    fn end(self) -> Result<()> {
        self.blocks.end()
    }
}

/// A record's fields: written straight out while they arrive in schema order, buffered by
/// position once one does not.
pub(crate) struct StructSer<'a, 's> {
    out: &'a mut Vec<u8>,
    names: &'a Names<'s>,
    record: &'s RecordSchema,
    /// The position of the next field to write straight out; all before it are written.
    next: usize,
    /// Set once a field comes out of order (kept out of line: the in-order path stays small).
    spill: Option<Box<Spill>>,
}

#[derive(Default)]
struct Spill {
    /// Fields at or after `next`, serialized out of order, by position.
    slots: Vec<Option<Vec<u8>>>,
    /// A map key waiting for its value (a map serialized into a record).
    key: Option<String>,
}

/// Field names compared with a few word loads instead of a call into `memcmp`: they are short,
/// and this runs once per field.
#[inline]
fn same_name(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let n = a.len();
    if n != b.len() {
        return false;
    }
    fn word<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
        bytes.get(at..at + N)?.try_into().ok()
    }
    match n {
        0..=3 => a.iter().zip(b).all(|(x, y)| x == y),
        // Two overlapping loads cover the whole name.
        4..=7 => word::<4>(a, 0) == word::<4>(b, 0) && word::<4>(a, n - 4) == word::<4>(b, n - 4),
        8..=16 => word::<8>(a, 0) == word::<8>(b, 0) && word::<8>(a, n - 8) == word::<8>(b, n - 8),
        _ => a == b,
    }
}

impl<'a, 's> StructSer<'a, 's> {
    pub(super) fn new(out: &'a mut Vec<u8>, names: &'a Names<'s>, record: &'s RecordSchema) -> Self {
        Self { out, names, record, next: 0, spill: None }
    }

    fn spill(&mut self) -> &mut Spill {
        let fields = self.record.fields.len();
        self.spill.get_or_insert_with(|| Box::new(Spill { slots: vec![None; fields], key: None }))
    }

    #[inline]
    fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<()> {
        let record: &'s RecordSchema = self.record;
        if self.spill.is_none() {
            if let Some(field) = record.fields.get(self.next).filter(|field| same_name(&field.name, key)) {
                value.serialize(ValueSer::new(self.out, self.names, &field.schema)).map_err(|e| e.at_field(key))?;
                self.next += 1;
                return Ok(());
            }
        }
        self.field_out_of_order(key, value)
    }

    #[inline(never)]
    fn field_out_of_order<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<()> {
        let (position, field) = self.lookup(key)?;
        let mut bytes = Vec::new();
        value.serialize(ValueSer::new(&mut bytes, self.names, &field.schema)).map_err(|e| e.at_field(key))?;
        *self.slot(position, key)? = Some(bytes);
        Ok(())
    }

    fn lookup(&self, key: &str) -> Result<(usize, &'s apache_avro::schema::RecordField)> {
        let record = self.record;
        record
            .lookup
            .get(key)
            .and_then(|&position| Some((position, record.fields.get(position)?)))
            .ok_or_else(|| DatumErrorKind::UnknownField(key.to_owned()).into())
    }

    /// The empty buffer slot of the field at `position`.
    fn slot(&mut self, position: usize, key: &str) -> Result<&mut Option<Vec<u8>>> {
        let next = self.next;
        match self.spill().slots.get_mut(position) {
            Some(slot) if position >= next && slot.is_none() => Ok(slot),
            _ => Err(DatumErrorKind::DuplicateField(key.to_owned()).into()),
        }
    }

    /// Writes the default of the field at `position`, or fails if it has none.
    fn default(&mut self, position: usize) -> Result<()> {
        let record: &'s RecordSchema = self.record;
        let Some(field) = record.fields.get(position) else { return Ok(()) };
        let Some(default) = &field.default else {
            return Err(DatumErrorKind::MissingField(field.name.clone()).into());
        };
        default.serialize(ValueSer::new(self.out, self.names, &field.schema)).map_err(|e| e.at_field(&field.name))
    }

    /// The next field by position (a tuple written into a record).
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        let record: &'s RecordSchema = self.record;
        let fields = &record.fields;
        let field = fields
            .get(self.next)
            .ok_or(DatumErrorKind::LengthMismatch { announced: fields.len(), given: self.next + 1 })?;
        value.serialize(ValueSer::new(self.out, self.names, &field.schema)).map_err(|e| e.at_field(&field.name))?;
        self.next += 1;
        Ok(())
    }

    #[inline]
    fn finish(self) -> Result<()> {
        if self.next == self.record.fields.len() && self.spill.is_none() {
            return Ok(());
        }
        self.finish_rest()
    }

    /// Writes the fields not yet written: buffered ones, or defaults.
    #[inline(never)]
    fn finish_rest(mut self) -> Result<()> {
        for position in self.next..self.record.fields.len() {
            match self.spill.as_mut().and_then(|spill| spill.slots.get_mut(position)).and_then(Option::take) {
                Some(bytes) => self.out.extend_from_slice(&bytes),
                None => self.default(position)?,
            }
        }
        Ok(())
    }
}

impl ser::SerializeStruct for StructSer<'_, '_> {
    type Ok = ();
    type Error = DatumError;

    #[inline]
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<()> {
        self.field(key, value)
    }

    /// A field the value leaves out (`skip_serializing_if`) takes its schema default.
    fn skip_field(&mut self, key: &'static str) -> Result<()> {
        if self.spill.is_none() && self.record.fields.get(self.next).is_some_and(|field| field.name == key) {
            self.default(self.next)?;
            self.next += 1;
            return Ok(());
        }
        let (position, _) = self.lookup(key)?;
        self.slot(position, key).map(drop)
    }

    #[inline]
    fn end(self) -> Result<()> {
        self.finish()
    }
}

impl ser::SerializeStructVariant for StructSer<'_, '_> {
    type Ok = ();
    type Error = DatumError;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<()> {
        self.field(key, value)
    }

    fn end(self) -> Result<()> {
        self.finish()
    }
}

/// A tuple: an array, or a record's fields by position.
pub(crate) enum TupleSer<'a, 's> {
    Array(SeqSer<'a, 's>),
    Record(StructSer<'a, 's>),
}

impl TupleSer<'_, '_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        match self {
            Self::Array(seq) => ser::SerializeSeq::serialize_element(seq, value),
            Self::Record(record) => record.element(value),
        }
    }

    fn finish(self) -> Result<()> {
        match self {
            Self::Array(seq) => ser::SerializeSeq::end(seq),
            Self::Record(record) => record.finish(),
        }
    }
}

macro_rules! tuple_like {
    ($($trait:ident :: $method:ident),*) => {$(
        impl ser::$trait for TupleSer<'_, '_> {
            type Ok = ();
            type Error = DatumError;

            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
                self.element(value)
            }

            fn end(self) -> Result<()> {
                self.finish()
            }
        }
    )*};
}

tuple_like!(
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

/// A map: an Avro map, or a record whose fields the keys name (e.g. `#[serde(flatten)]`).
pub(crate) enum MapSer<'a, 's> {
    Map(EntrySer<'a, 's>),
    Record(StructSer<'a, 's>),
}

impl ser::SerializeMap for MapSer<'_, '_> {
    type Ok = ();
    type Error = DatumError;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<()> {
        match self {
            Self::Map(entries) => ser::SerializeMap::serialize_key(entries, key),
            Self::Record(record) => {
                let mut bytes = Vec::new();
                key.serialize(ValueSer::new(&mut bytes, record.names, &STRING))?;
                let key = read_key(&bytes).ok_or_else(|| DatumError::mismatch("a string key", &STRING))?;
                record.spill().key = Some(key.to_owned());
                Ok(())
            }
        }
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        match self {
            Self::Map(entries) => ser::SerializeMap::serialize_value(entries, value),
            Self::Record(record) => {
                let key = record
                    .spill()
                    .key
                    .take()
                    .ok_or_else(|| <DatumError as ser::Error>::custom("a map value came without a key"))?;
                record.field(&key, value)
            }
        }
    }

    fn end(self) -> Result<()> {
        match self {
            Self::Map(entries) => ser::SerializeMap::end(entries),
            Self::Record(record) => record.finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::same_name;

    #[test]
    fn names_compare_equal_only_when_every_byte_is_equal() {
        for name in
            ["", "a", "sku", "lines", "order_id", "customer_id", "unit_price_minor", "a_name_longer_than_sixteen"]
        {
            assert!(same_name(name, name), "{name}");
            assert!(!same_name(name, &format!("{name}x")), "{name}");
        }
        for (a, b) in [
            ("skv", "sku"),
            ("lineZ", "lines"),
            ("currency", "order_id"),
            ("abcd_1234_x", "abcd_1235_x"),
            ("0123456789abcdeF", "0123456789abcdef"),
        ] {
            assert!(!same_name(a, b), "{a} / {b}");
        }
        assert!(!same_name("a_name_longer_than_sixteeN", "a_name_longer_than_sixteen"));
    }
}
