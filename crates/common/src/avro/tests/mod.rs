//! The codec's tests: framing, round trips and evolution here; the fast codec against
//! apache-avro in `differential`; hostile input in `hostile`.

mod differential;
mod fixtures;
mod hostile;

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
fn schemas_with_named_references_round_trip() {
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
