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

#[derive(Debug, PartialEq, Serialize, Deserialize)]
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
    assert_eq!(v2, ThingV2 { id: "a-1".into(), count: 3, tags: vec!["x".into(), "y".into()], note: None, level: 7 });
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
    let reader =
        schema(r#"{"type":"record","name":"Thing","namespace":"t","fields":[{"name":"missing","type":"string"}]}"#);
    let bytes = encode(SchemaId(1), &schema(V1), &thing()).unwrap();
    let err = decode_value(unframe(&bytes).unwrap().body, &schema(V1), Some(&reader)).unwrap_err();
    assert!(matches!(err, CodecError::Resolve { .. }), "{err}");
}

#[test]
fn schemas_with_named_references_round_trip() {
    let s = schema(
        r#"{"type":"record","name":"Pair","fields":[
        {"name":"a","type":{"type":"record","name":"Money","fields":[{"name":"minor","type":"long"}]}},
        {"name":"b","type":"Money"}]}"#,
    );
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

/// A schema id and an Avro body: random bytes, or a valid `V1` or `V2` body with one byte
/// changed or a few bytes added.
fn framed_body() -> impl Strategy<Value = (u32, Vec<u8>)> {
    let random = proptest::collection::vec(any::<u8>(), 0..256);
    let tags = || proptest::collection::vec(".{0,6}", 0..4);
    let v1 = (".{0,12}", any::<i32>(), tags())
        .prop_map(|(id, count, tags)| encode(SchemaId(1), &schema(V1), &ThingV1 { id, count, tags }).unwrap());
    let v2 = (".{0,12}", any::<i64>(), tags(), proptest::option::of(".{0,6}"), any::<i32>()).prop_map(
        |(id, count, tags, note, level)| {
            encode(SchemaId(2), &schema(V2), &ThingV2 { id, count, tags, note, level }).unwrap()
        },
    );
    let edit = prop_oneof![
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(at, byte)| (Some((at, byte)), Vec::new())),
        proptest::collection::vec(any::<u8>(), 1..4).prop_map(|extra| (None, extra)),
    ];
    let edited = (prop_oneof![v1, v2], edit).prop_map(|(framed, (change, extra))| {
        let mut body = framed[HEADER_LEN..].to_vec();
        if let Some((at, byte)) = change {
            let at = at.index(body.len());
            body[at] = byte;
        }
        body.extend(extra);
        body
    });
    (any::<u32>(), prop_oneof![random, edited])
}

/// The fast codec's `ours` and apache-avro's `reference` for the same body: both the same value,
/// or both an error of the same kind, and that kind about the bytes (the Rust type fits the
/// schema, so never `Deserialize`; the frame was fine, so never a frame error).
fn same_verdict<T>(ours: &Result<T, CodecError>, reference: Result<Value, CodecError>) -> Result<(), TestCaseError>
where
    T: PartialEq + std::fmt::Debug + serde::de::DeserializeOwned,
{
    match (ours, reference) {
        (Ok(value), Ok(expected)) => prop_assert_eq!(value, &apache_avro::from_value::<T>(&expected).unwrap()),
        (Err(error), Err(expected)) => {
            prop_assert!(matches!(error, CodecError::Decode { .. } | CodecError::TrailingBytes { .. }), "{}", error);
            prop_assert_eq!(
                std::mem::discriminant(error),
                std::mem::discriminant(&expected),
                "{} / {}",
                error,
                expected
            );
        }
        (ours, reference) => prop_assert!(false, "the codec gives {:?}, apache-avro {:?}", ours, reference),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Behind a valid frame, so every case reaches the decoder: random bodies, and valid ones
    /// with one byte changed or bytes added. The fast codec gives the verdict apache-avro gives (the same value,
    /// or an error of the same kind, never a panic), and reading into the newer reader schema
    /// succeeds exactly when reading with the writer's does.
    #[test]
    fn framed_random_bodies_give_the_reference_verdict_and_typed_errors((schema_id, body) in framed_body()) {
        let mut bytes = vec![MAGIC_BYTE];
        bytes.extend_from_slice(&schema_id.to_be_bytes());
        bytes.extend_from_slice(&body);
        let framed = unframe(&bytes).unwrap();
        prop_assert_eq!(framed, Framed { schema_id: SchemaId(schema_id), body: &body[..] });
        let (v1, v2) = (schema(V1), schema(V2));

        let old = decode::<ThingV1>(framed.body, &v1, None);
        same_verdict(&old, decode_value(framed.body, &v1, None))?;
        same_verdict(&decode::<ThingV2>(framed.body, &v2, None), decode_value(framed.body, &v2, None))?;

        let evolved = decode::<ThingV2>(framed.body, &v1, Some(&v2));
        match (&old, &evolved) {
            (Ok(old), Ok(new)) => prop_assert_eq!(
                new,
                &ThingV2 { id: old.id.clone(), count: old.count.into(), tags: old.tags.clone(), note: None, level: 7 }
            ),
            (Err(before), Err(after)) => prop_assert_eq!(
                std::mem::discriminant(before), std::mem::discriminant(after), "{} / {}", before, after
            ),
            _ => prop_assert!(false, "with the writer schema {:?}, into the reader schema {:?}", old, evolved),
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
