//! The fast codec against apache-avro: the same bytes out, the same values back in.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde::{Deserialize, Serialize, Serializer};

use super::fixtures::*;
use crate::avro::{self, CodecError, DatumErrorKind};
use crate::catalog::Catalog;
use crate::events::{
    samples, CancellationReason, OrderCancelled, OrderLine, OrderPlaced, OrderShipped, PaymentAuthorized,
};

fn catalog_schema(name: &str) -> apache_avro::Schema {
    (*Catalog::embedded().unwrap().event(name).unwrap().schema).clone()
}

fn millis() -> impl Strategy<Value = i64> {
    -4_102_444_800_000i64..4_102_444_800_000
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_avro_type_matches_apache_avro(value in everything()) {
        same_as_apache(&schema(EVERYTHING), &value)?;
    }

    #[test]
    fn decimals_durations_and_big_decimals_write_the_same_bytes(
        amount in proptest::collection::vec(any::<u8>(), 1..12), amount_fixed in any::<[u8; 8]>(),
        span in any::<[u8; 12]>(), huge in proptest::collection::vec(any::<u8>(), 0..20),
    ) {
        let s = schema(WRITE_ONLY);
        let value = Extras { amount, amount_fixed, span, huge };
        let body = ours(&s, &value).unwrap();
        prop_assert_eq!(&body, &apache_encode(&s, &value).unwrap());
        // apache-avro cannot read these into serde types; this codec gives their bytes.
        prop_assert_eq!(avro::decode::<Extras>(&body, &s, None).unwrap(), value);
    }

    #[test]
    fn named_references_and_recursion_match_apache_avro(value in ledger()) {
        let s = schema(LEDGER);
        let body = ours(&s, &value).unwrap();
        // apache-avro's direct serializer cannot follow references; its `Value` path can, but
        // writes map entries in hash order: compare what the bytes say, and the bytes themselves
        // when no map has two entries.
        let reference = apache_avro::to_value(&value).and_then(|v| apache_avro::to_avro_datum(&s, v)).unwrap();
        let read = |bytes: &[u8]| apache_avro::from_avro_datum(&s, &mut &bytes[..], None).unwrap();
        prop_assert_eq!(read(&body), read(&reference));
        let mut maps = Some(&value);
        let mut small_maps = true;
        while let Some(ledger) = maps {
            small_maps &= ledger.by_account.len() < 2;
            maps = ledger.previous.as_deref();
        }
        if small_maps {
            prop_assert_eq!(&body, &reference);
        }
        let back: Ledger = avro::decode(&body, &s, None).unwrap();
        prop_assert_eq!(&back, &apache_decode::<Ledger>(&s, &body).unwrap());
        prop_assert_eq!(back, value);
    }

    #[test]
    fn catalog_orders_match_apache_avro(
        order_id in ".{0,36}", customer_id in ".{0,40}", currency in "[A-Z]{3}", at in millis(),
        lines in proptest::collection::vec((".{0,20}", any::<i32>(), any::<i64>()), 0..30),
    ) {
        let lines = lines.into_iter().map(|(sku, quantity, unit_price_minor)| OrderLine { sku, quantity, unit_price_minor }).collect();
        let order = OrderPlaced { order_id, customer_id, lines, currency, total_minor: at / 7, placed_at: samples::at(at) };
        same_as_apache(&catalog_schema("OrderPlaced"), &order)?;
    }

    #[test]
    fn catalog_events_with_unions_and_enums_match_apache_avro(
        id in ".{0,20}", tracking in proptest::option::of(".{0,20}"), at in millis(), amount in any::<i64>(),
        reason in prop_oneof![
            Just(CancellationReason::CustomerRequest), Just(CancellationReason::OutOfStock),
            Just(CancellationReason::PaymentFailed), Just(CancellationReason::FraudSuspected), Just(CancellationReason::Other),
        ],
    ) {
        let shipped = OrderShipped { order_id: id.clone(), carrier: "DHL".into(), tracking_number: tracking, shipped_at: samples::at(at) };
        same_as_apache(&catalog_schema("OrderShipped"), &shipped)?;
        let cancelled = OrderCancelled { order_id: id.clone(), reason, cancelled_at: samples::at(at) };
        same_as_apache(&catalog_schema("OrderCancelled"), &cancelled)?;
        let authorized = PaymentAuthorized { payment_id: id.clone(), order_id: id, amount_minor: amount, currency: "EUR".into(), authorized_at: samples::at(at) };
        same_as_apache(&catalog_schema("PaymentAuthorized"), &authorized)?;
    }

    #[test]
    fn long_arrays_and_maps_are_blocked_like_apache_avro(len in 1000usize..2100) {
        let s = schema(r#"{"type":"record","name":"Big","fields":[
            {"name":"items","type":{"type":"array","items":"int"}},
            {"name":"index","type":{"type":"map","values":"int"}}]}"#);
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Big { items: Vec<i32>, index: BTreeMap<String, i32> }
        let big = Big { items: (0..len as i32).collect(), index: (0..len as i32).map(|i| (i.to_string(), i)).collect() };
        same_as_apache(&s, &big)?;
        // A sequence of unknown length (an iterator) is blocked the same way.
        struct Lazy(usize);
        impl Serialize for Lazy {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_seq((0..self.0 as i32).filter(|_| true))
            }
        }
        let items = schema(r#"{"type":"array","items":"int"}"#);
        prop_assert_eq!(ours(&items, &Lazy(len)).unwrap(), apache_encode(&items, &Lazy(len)).unwrap());
    }
}

#[test]
fn struct_fields_in_any_order_write_schema_order() {
    #[derive(Serialize)]
    struct Shuffled<'a> {
        total_minor: i64,
        currency: &'a str,
        lines: Vec<OrderLine>,
        placed_at: i64,
        order_id: &'a str,
        customer_id: &'a str,
    }
    let order = samples::order_placed("o-1");
    let shuffled = Shuffled {
        total_minor: order.total_minor,
        currency: &order.currency,
        lines: order.lines.clone(),
        placed_at: order.placed_at.timestamp_millis(),
        order_id: &order.order_id,
        customer_id: &order.customer_id,
    };
    let s = catalog_schema("OrderPlaced");
    assert_eq!(ours(&s, &shuffled).unwrap(), ours(&s, &order).unwrap());
}

#[test]
fn flattened_structs_and_tuple_structs_fill_records() {
    let point =
        schema(r#"{"type":"record","name":"Point","fields":[{"name":"x","type":"int"},{"name":"y","type":"double"}]}"#);
    let expected = apache_encode(&point, &Point { x: 3, y: 0.5 }).unwrap();

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Y {
        y: f64,
    }
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Flat {
        x: i32,
        #[serde(flatten)]
        rest: Y,
    }
    let flat = Flat { x: 3, rest: Y { y: 0.5 } };
    assert_eq!(ours(&point, &flat).unwrap(), expected);
    assert_eq!(avro::decode::<Flat>(&expected, &point, None).unwrap(), flat);

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Pair(i32, f64);
    assert_eq!(ours(&point, &Pair(3, 0.5)).unwrap(), expected);
    assert_eq!(avro::decode::<Pair>(&expected, &point, None).unwrap(), Pair(3, 0.5));
}

#[test]
fn a_missing_field_takes_its_default_or_is_named() {
    let s = schema(
        r#"{"type":"record","name":"R","fields":[
        {"name":"a","type":"string"},
        {"name":"note","type":["null","string"],"default":null},
        {"name":"level","type":"int","default":7}]}"#,
    );
    #[derive(Serialize)]
    struct OnlyA {
        a: &'static str,
    }
    #[derive(Debug, PartialEq, Deserialize)]
    struct Full {
        a: String,
        note: Option<String>,
        level: i32,
    }
    let body = ours(&s, &OnlyA { a: "x" }).unwrap();
    assert_eq!(avro::decode::<Full>(&body, &s, None).unwrap(), Full { a: "x".into(), note: None, level: 7 });

    #[derive(Serialize)]
    struct OnlyLevel {
        level: i32,
    }
    let err = ours(&s, &OnlyLevel { level: 1 }).unwrap_err();
    assert_eq!(datum_kind(&err), Some(&DatumErrorKind::MissingField("a".into())), "{err}");

    #[derive(Serialize)]
    struct Extra {
        a: &'static str,
        surprise: bool,
    }
    let err = ours(&s, &Extra { a: "x", surprise: true }).unwrap_err();
    assert_eq!(datum_kind(&err), Some(&DatumErrorKind::UnknownField("surprise".into())), "{err}");
}

#[test]
fn skipped_fields_take_their_defaults() {
    let s = schema(
        r#"{"type":"record","name":"R","fields":[
        {"name":"note","type":["null","string"],"default":null},
        {"name":"a","type":"string"}]}"#,
    );
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Skipping {
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<String>,
        a: String,
    }
    #[derive(Serialize)]
    struct Plain {
        note: Option<String>,
        a: String,
    }
    let value = Skipping { note: None, a: "x".into() };
    let expected = apache_encode(&s, &Plain { note: None, a: "x".into() }).unwrap();
    // (apache-avro itself fails here: it writes the default `null` into the union's string branch.)
    assert_eq!(ours(&s, &value).unwrap(), expected);
    assert_eq!(avro::decode::<Skipping>(&expected, &s, None).unwrap(), value);
}

#[test]
fn enums_are_written_by_symbol_name_not_rust_order() {
    let s = schema(r#"{"type":"enum","name":"Color","symbols":["RED","GREEN","BLUE"]}"#);
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
    enum Backwards {
        Blue,
        Green,
        Red,
    }
    assert_eq!(ours(&s, &Backwards::Blue).unwrap(), vec![4]);
    assert_eq!(avro::decode::<Backwards>(&[4], &s, None).unwrap(), Backwards::Blue);
    #[derive(Serialize)]
    enum Unknown {
        Purple,
    }
    let err = ours(&s, &Unknown::Purple).unwrap_err();
    assert_eq!(datum_kind(&err), Some(&DatumErrorKind::UnknownSymbol("Purple".into())), "{err}");
}

#[test]
fn a_value_that_does_not_fit_names_the_field_path() {
    #[derive(Serialize)]
    struct Line {
        sku: &'static str,
        quantity: i64,
        unit_price_minor: i64,
    }
    #[derive(Serialize)]
    struct Order {
        order_id: &'static str,
        customer_id: &'static str,
        lines: Vec<Line>,
    }
    let order = Order {
        order_id: "o",
        customer_id: "c",
        lines: vec![
            Line { sku: "a", quantity: 1, unit_price_minor: 1 },
            Line { sku: "b", quantity: 1 << 40, unit_price_minor: 1 },
        ],
    };
    let err = ours(&catalog_schema("OrderPlaced"), &order).unwrap_err();
    let CodecError::Encode { source, .. } = &err else { panic!("not an encode error: {err}") };
    assert!(err.to_string().contains("lines[1].quantity"), "{err}");
    assert_eq!(datum_kind(&err), Some(&DatumErrorKind::IntOverflow(1 << 40)), "{source}");

    #[derive(Serialize)]
    struct WrongType {
        order_id: u8,
    }
    let err = ours(&catalog_schema("OrderPlaced"), &WrongType { order_id: 1 }).unwrap_err();
    assert!(err.to_string().contains("order_id"), "{err}");
}

#[test]
fn a_sequence_that_lies_about_its_length_is_refused() {
    struct Liar;
    impl Serialize for Liar {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeSeq;
            let mut seq = s.serialize_seq(Some(3))?;
            seq.serialize_element(&1)?;
            seq.end()
        }
    }
    let err = ours(&schema(r#"{"type":"array","items":"int"}"#), &Liar).unwrap_err();
    assert_eq!(datum_kind(&err), Some(&DatumErrorKind::LengthMismatch { announced: 3, given: 1 }), "{err}");
}

#[test]
fn negative_block_counts_with_sizes_are_read() {
    let s = schema(r#"{"type":"array","items":"long"}"#);
    let mut body = Vec::new();
    varint(&mut body, -2); // two items, then their size in bytes
    varint(&mut body, 2);
    varint(&mut body, 5);
    varint(&mut body, -7);
    varint(&mut body, 1);
    varint(&mut body, 9);
    body.push(0);
    assert_eq!(avro::decode::<Vec<i64>>(&body, &s, None).unwrap(), vec![5, -7, 9]);
    assert_eq!(apache_decode::<Vec<i64>>(&s, &body).unwrap(), vec![5, -7, 9]);
}

#[test]
fn a_reader_schema_that_is_the_writer_takes_the_fast_path() {
    let s = catalog_schema("OrderPlaced");
    let order = samples::order_placed("o-2");
    let body = ours(&s, &order).unwrap();
    assert_eq!(avro::decode::<OrderPlaced>(&body, &s, Some(&s)).unwrap(), order);
}
