//! The Avro codec with Confluent framing. Pure: no I/O, no registry calls.
//!
//! A value on the wire is `0x00`, a 4-byte big-endian schema id, then the Avro binary body.
//! Encoding serializes straight from a `serde::Serialize` type into Avro (no intermediate
//! `Value`), checking it against the writer schema as it goes. Decoding reads the body with the
//! schema it was written with and, when the consumer's own reader schema differs, resolves it into
//! that (Avro schema resolution: added fields take their defaults, removed ones are skipped), so
//! old events still read after a compatible change. Every failure is a [`CodecError`]; nothing
//! panics on bad bytes, and a body with bytes left over after the record is refused.

use std::fmt;

use apache_avro::types::Value;
use apache_avro::Schema;
use serde::de::DeserializeOwned;
use serde::Serialize;

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
        source: Box<apache_avro::Error>,
    },
    #[error("cannot decode the Avro body with writer schema {schema}: {source}")]
    Decode {
        schema: String,
        #[source]
        source: Box<apache_avro::Error>,
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
        source: Box<apache_avro::Error>,
    },
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
        [_, a, b, c, d, body @ ..] => Ok(Framed {
            schema_id: SchemaId(u32::from_be_bytes([*a, *b, *c, *d])),
            body,
        }),
        _ => Err(CodecError::TooShort { len: bytes.len() }),
    }
}

fn header(schema_id: SchemaId, capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + capacity);
    out.push(MAGIC_BYTE);
    out.extend_from_slice(&schema_id.0.to_be_bytes());
    out
}

/// Serializes `value` as a record of `schema` and frames it with `schema_id`.
pub fn encode<T: Serialize>(schema_id: SchemaId, schema: &Schema, value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = header(schema_id, 128);
    let written = if has_named_references(schema) {
        // The direct serializer cannot follow references to named types; go through a Value.
        apache_avro::to_value(value)
            .and_then(|v| apache_avro::to_avro_datum(schema, v))
            .map(|body| out.extend_from_slice(&body))
    } else {
        apache_avro::write_avro_datum_ref(schema, value, &mut out).map(|_| ())
    };
    written.map_err(|source| CodecError::Encode { schema: schema_name(schema), source: Box::new(source) })?;
    Ok(out)
}

/// Encodes a dynamic Avro value (validated against `schema`) and frames it with `schema_id`.
pub fn encode_value(schema_id: SchemaId, schema: &Schema, value: Value) -> Result<Vec<u8>, CodecError> {
    let body = apache_avro::to_avro_datum(schema, value)
        .map_err(|source| CodecError::Encode { schema: schema_name(schema), source: Box::new(source) })?;
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
        .map_err(|source| CodecError::Decode { schema: schema_name(writer), source: Box::new(source) })?;
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
    let value = decode_value(body, writer, reader)?;
    apache_avro::from_value(&value).map_err(|source| CodecError::Deserialize {
        schema: schema_name(reader.unwrap_or(writer)),
        source: Box::new(source),
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::Deserialize;

    const V1: &str = r#"{"type":"record","name":"Thing","namespace":"t","fields":[
        {"name":"id","type":"string"},
        {"name":"count","type":"int"},
        {"name":"tags","type":{"type":"array","items":"string"}}]}"#;
    const V2: &str = r#"{"type":"record","name":"Thing","namespace":"t","fields":[
        {"name":"id","type":"string"},
        {"name":"count","type":"long"},
        {"name":"tags","type":{"type":"array","items":"string"}},
        {"name":"note","type":["null","string"],"default":null},
        {"name":"level","type":"int","default":7}]}"#;

    #[derive(Debug, PartialEq, Serialize, Deserialize, Clone)]
    struct ThingV1 {
        id: String,
        count: i32,
        tags: Vec<String>,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    struct ThingV2 {
        id: String,
        count: i64,
        tags: Vec<String>,
        note: Option<String>,
        level: i32,
    }

    fn schema(text: &str) -> Schema {
        Schema::parse_str(text).unwrap()
    }

    fn thing() -> ThingV1 {
        ThingV1 { id: "a-1".into(), count: 3, tags: vec!["x".into(), "y".into()] }
    }

    #[test]
    fn framing_carries_the_schema_id_big_endian() {
        let bytes = encode(SchemaId(0x0102_0304), &schema(V1), &thing()).unwrap();
        assert_eq!(&bytes[..5], &[0, 1, 2, 3, 4]);
        let framed = unframe(&bytes).unwrap();
        assert_eq!(framed.schema_id, SchemaId(0x0102_0304));
        assert_eq!(framed.body, &bytes[5..]);
    }

    #[test]
    fn round_trip_with_the_same_schema() {
        let s = schema(V1);
        let bytes = encode(SchemaId(7), &s, &thing()).unwrap();
        let back: ThingV1 = decode(unframe(&bytes).unwrap().body, &s, None).unwrap();
        assert_eq!(back, thing());
    }

    #[test]
    fn old_data_reads_into_a_newer_reader_schema() {
        let bytes = encode(SchemaId(1), &schema(V1), &thing()).unwrap();
        let v2: ThingV2 = decode(unframe(&bytes).unwrap().body, &schema(V1), Some(&schema(V2))).unwrap();
        assert_eq!(
            v2,
            ThingV2 { id: "a-1".into(), count: 3, tags: vec!["x".into(), "y".into()], note: None, level: 7 }
        );
    }

    #[test]
    fn a_value_that_does_not_fit_the_schema_is_an_encode_error() {
        #[derive(Serialize)]
        struct Wrong {
            id: u64,
        }
        let err = encode(SchemaId(1), &schema(V1), &Wrong { id: 1 }).unwrap_err();
        assert!(matches!(err, CodecError::Encode { .. }), "{err}");
    }

    #[test]
    fn header_errors_are_typed() {
        assert!(matches!(unframe(&[]), Err(CodecError::Empty)));
        assert!(matches!(unframe(&[1, 0, 0, 0, 1]), Err(CodecError::BadMagic { found: 1 })));
        assert!(matches!(unframe(&[0, 0, 0]), Err(CodecError::TooShort { len: 3 })));
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let s = schema(V1);
        let mut bytes = encode(SchemaId(1), &s, &thing()).unwrap();
        bytes.push(0);
        let err = decode::<ThingV1>(unframe(&bytes).unwrap().body, &s, None).unwrap_err();
        assert!(matches!(err, CodecError::TrailingBytes { count: 1, .. }), "{err}");
    }

    #[test]
    fn an_incompatible_reader_is_a_resolve_error() {
        let reader = schema(r#"{"type":"record","name":"Thing","namespace":"t","fields":[{"name":"missing","type":"string"}]}"#);
        let bytes = encode(SchemaId(1), &schema(V1), &thing()).unwrap();
        let err = decode_value(unframe(&bytes).unwrap().body, &schema(V1), Some(&reader)).unwrap_err();
        assert!(matches!(err, CodecError::Resolve { .. }), "{err}");
    }

    #[test]
    fn schemas_with_named_references_encode_through_values() {
        let s = schema(r#"{"type":"record","name":"Pair","fields":[
            {"name":"a","type":{"type":"record","name":"Money","fields":[{"name":"minor","type":"long"}]}},
            {"name":"b","type":"Money"}]}"#);
        assert!(has_named_references(&s));
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Money {
            minor: i64,
        }
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Pair {
            a: Money,
            b: Money,
        }
        let pair = Pair { a: Money { minor: 1 }, b: Money { minor: 2 } };
        let bytes = encode(SchemaId(1), &s, &pair).unwrap();
        assert_eq!(decode::<Pair>(&bytes[5..], &s, None).unwrap(), pair);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn random_bytes_give_typed_errors_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let s = schema(V2);
            if let Ok(framed) = unframe(&bytes) {
                let _ = decode::<ThingV1>(framed.body, &s, None);
                let _ = decode_value(framed.body, &s, Some(&schema(V1)));
            }
        }

        #[test]
        fn every_truncation_of_a_valid_message_is_an_error(
            id in ".{0,20}", count in any::<i32>(), tags in proptest::collection::vec(".{0,8}", 0..5)
        ) {
            let s = schema(V1);
            let value = ThingV1 { id, count, tags };
            let bytes = encode(SchemaId(9), &s, &value).unwrap();
            let back: ThingV1 = decode(unframe(&bytes).unwrap().body, &s, None).unwrap();
            prop_assert_eq!(&back, &value);
            for cut in 0..bytes.len() {
                let outcome = unframe(&bytes[..cut]).and_then(|f| decode::<ThingV1>(f.body, &s, None));
                prop_assert!(outcome.is_err(), "a message cut at {} of {} bytes decoded", cut, bytes.len());
            }
        }

        #[test]
        fn absurd_length_prefixes_are_errors_not_aborts(len in 1_000_000_000i64..i64::MAX / 4) {
            // A string whose zig-zag varint length claims gigabytes.
            let mut body = Vec::new();
            let mut n = ((len << 1) ^ (len >> 63)) as u64;
            loop {
                let byte = (n & 0x7f) as u8;
                n >>= 7;
                if n == 0 { body.push(byte); break; }
                body.push(byte | 0x80);
            }
            prop_assert!(decode_value(&body, &schema(V1), None).is_err());
        }
    }
}
