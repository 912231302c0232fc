//! Corrupt and hostile bodies: typed errors only, no panics, no huge allocations, no stack
//! overflow.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde::Deserialize;

use super::fixtures::*;
use crate::avro::{self, CodecError, DatumErrorKind, MAX_DEPTH};

fn decode_err<T: serde::de::DeserializeOwned + std::fmt::Debug>(schema_text: &str, body: &[u8]) -> CodecError {
    avro::decode::<T>(body, &schema(schema_text), None).unwrap_err()
}

fn assert_kind(err: &CodecError, expected: &DatumErrorKind) {
    assert!(matches!(err, CodecError::Decode { .. }), "not a decode error: {err}");
    assert_eq!(datum_kind(err), Some(expected), "{err}");
}

#[test]
fn huge_counts_are_refused_before_allocating() {
    for count in [1_000_000_000i64, i64::MAX, -i64::MAX, i64::MIN] {
        let mut body = Vec::new();
        varint(&mut body, count);
        varint(&mut body, 1);
        let err = decode_err::<Vec<i64>>(r#"{"type":"array","items":"long"}"#, &body);
        assert!(matches!(datum_kind(&err), Some(DatumErrorKind::TooManyItems { .. })), "{count}: {err}");
        let err = decode_err::<BTreeMap<String, i64>>(r#"{"type":"map","values":"long"}"#, &body);
        assert!(matches!(datum_kind(&err), Some(DatumErrorKind::TooManyItems { .. })), "{count}: {err}");
    }
    // Items of zero bytes cannot be bounded by the input; they have a budget instead.
    let mut body = Vec::new();
    varint(&mut body, 1 << 40);
    let err = decode_err::<Vec<()>>(r#"{"type":"array","items":"null"}"#, &body);
    assert!(matches!(datum_kind(&err), Some(DatumErrorKind::TooManyItems { .. })), "{err}");
}

#[test]
fn huge_string_and_bytes_lengths_are_refused() {
    let mut body = Vec::new();
    varint(&mut body, 1 << 50);
    body.extend_from_slice(b"abc");
    let err = decode_err::<String>(r#""string""#, &body);
    assert_kind(&err, &DatumErrorKind::LengthPastEnd { len: 1 << 50, remaining: 3 });
    let mut negative = Vec::new();
    varint(&mut negative, -3);
    assert_kind(&decode_err::<String>(r#""string""#, &negative), &DatumErrorKind::NegativeLength(-3));
}

#[test]
fn deep_nesting_stops_at_the_depth_limit() {
    #[derive(Debug, Deserialize)]
    struct Node {
        #[allow(dead_code)]
        next: Option<Box<Node>>,
    }
    #[derive(Debug, Deserialize)]
    struct Ignores {}
    let list = r#"{"type":"record","name":"Node","fields":[{"name":"next","type":["null","Node"]}]}"#;
    // Every level: union branch 1 (another node); it never ends.
    let body = vec![2u8; 100_000];
    assert_kind(&decode_err::<Node>(list, &body), &DatumErrorKind::TooDeep(MAX_DEPTH));
    // Skipping an unwanted field walks the same depth and stops the same way.
    assert_kind(&decode_err::<Ignores>(list, &body), &DatumErrorKind::TooDeep(MAX_DEPTH));
    // Within the limit, it reads.
    let mut shallow = vec![2u8; 100];
    shallow.push(0);
    assert!(avro::decode::<Node>(&shallow, &schema(list), None).is_ok());
}

#[test]
fn invalid_utf8_is_refused_where_read_and_where_skipped() {
    let body = [4u8, 0xff, 0xfe];
    assert_kind(&decode_err::<String>(r#""string""#, &body), &DatumErrorKind::InvalidUtf8);
    #[derive(Debug, Deserialize)]
    struct Ignores {}
    let record = r#"{"type":"record","name":"R","fields":[{"name":"s","type":"string"}]}"#;
    assert_kind(&decode_err::<Ignores>(record, &body), &DatumErrorKind::InvalidUtf8);
}

#[test]
fn bad_union_enum_and_boolean_values_are_refused() {
    let optional = r#"["null","string"]"#;
    assert_kind(&decode_err::<Option<String>>(optional, &[4]), &DatumErrorKind::UnionIndex { index: 2, branches: 2 });
    assert_kind(&decode_err::<Option<String>>(optional, &[1]), &DatumErrorKind::UnionIndex { index: -1, branches: 2 });
    let enumeration = r#"{"type":"enum","name":"E","symbols":["A","B"]}"#;
    assert_kind(&decode_err::<String>(enumeration, &[4]), &DatumErrorKind::EnumIndex { index: 2, symbols: 2 });
    assert_kind(&decode_err::<String>(enumeration, &[1]), &DatumErrorKind::EnumIndex { index: -1, symbols: 2 });
    assert_kind(&decode_err::<bool>(r#""boolean""#, &[2]), &DatumErrorKind::BadBoolean(2));
}

#[test]
fn integers_that_overflow_are_refused() {
    let mut body = Vec::new();
    varint(&mut body, 1 << 40);
    assert_kind(&decode_err::<i64>(r#""int""#, &body), &DatumErrorKind::IntOverflow(1 << 40));
    assert_kind(&decode_err::<i64>(r#""long""#, &[0xff; 11]), &DatumErrorKind::VarintTooLong);
    // A long that does not fit the target type is the type's complaint, not the bytes'.
    let err = decode_err::<u8>(r#""long""#, &body);
    assert!(matches!(err, CodecError::Deserialize { .. }), "{err}");
}

#[test]
fn a_type_that_does_not_fit_is_a_deserialize_error_with_a_path() {
    #[derive(Debug, Deserialize)]
    struct Wants {
        #[allow(dead_code)]
        count: String,
    }
    let s = r#"{"type":"record","name":"R","fields":[{"name":"count","type":"int"}]}"#;
    let err = decode_err::<Wants>(s, &[2]);
    assert!(matches!(err, CodecError::Deserialize { .. }), "{err}");
    assert!(err.to_string().contains("at count"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic_on_any_schema(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = avro::decode::<Everything>(&body, &schema(EVERYTHING), None);
        let _ = avro::decode::<Ledger>(&body, &schema(LEDGER), None);
        let _ = avro::decode::<serde::de::IgnoredAny>(&body, &schema(EVERYTHING), None);
    }

    #[test]
    fn every_truncation_of_every_type_is_an_error(value in everything()) {
        let s = schema(EVERYTHING);
        let body = ours(&s, &value).unwrap();
        for cut in 0..body.len() {
            prop_assert!(avro::decode::<Everything>(&body[..cut], &s, None).is_err(), "cut at {} of {}", cut, body.len());
        }
    }

    #[test]
    fn every_truncation_of_a_ledger_is_an_error(value in ledger()) {
        let s = schema(LEDGER);
        let body = ours(&s, &value).unwrap();
        for cut in 0..body.len() {
            prop_assert!(avro::decode::<Ledger>(&body[..cut], &s, None).is_err(), "cut at {} of {}", cut, body.len());
        }
    }
}
