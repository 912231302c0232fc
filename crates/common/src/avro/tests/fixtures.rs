//! Test schemas covering every Avro type, Rust types that mirror them, value strategies, and the
//! apache-avro reference codec the fast one is checked against.

use std::collections::BTreeMap;
use std::fmt::Debug;

use apache_avro::Schema;
use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::avro::{self, BodyError, CodecError, DatumErrorKind, SchemaId};

/// Every Avro type once, without named references (apache-avro's direct serializer cannot follow
/// them, and it is the reference here).
pub const EVERYTHING: &str = r#"{"type":"record","name":"Everything","namespace":"test","fields":[
    {"name":"n","type":"null"},
    {"name":"flag","type":"boolean"},
    {"name":"small","type":"int"},
    {"name":"big","type":"long"},
    {"name":"ratio","type":"float"},
    {"name":"precise","type":"double"},
    {"name":"blob","type":"bytes"},
    {"name":"text","type":"string"},
    {"name":"digest","type":{"type":"fixed","name":"Digest","size":4}},
    {"name":"color","type":{"type":"enum","name":"Color","symbols":["RED","GREEN","BLUE"]}},
    {"name":"tags","type":{"type":"array","items":"string"}},
    {"name":"counts","type":{"type":"map","values":"long"}},
    {"name":"maybe_first","type":["null","string"]},
    {"name":"maybe_last","type":["long","null"]},
    {"name":"maybe_blob","type":["null","bytes"]},
    {"name":"choice","type":["null","int","string",
        {"type":"record","name":"Point","fields":[{"name":"x","type":"int"},{"name":"y","type":"double"}]}]},
    {"name":"inner","type":{"type":"record","name":"Inner","fields":[
        {"name":"label","type":"string"},
        {"name":"shade","type":{"type":"enum","name":"Shade","symbols":["LIGHT","DARK"]}},
        {"name":"points","type":{"type":"array","items":{"type":"record","name":"Spot","fields":[
            {"name":"at","type":"long"},{"name":"note","type":["null","string"]}]}}},
        {"name":"matrix","type":{"type":"array","items":{"type":"array","items":"int"}}}]}},
    {"name":"spots","type":{"type":"map","values":{"type":"record","name":"Place","fields":[
        {"name":"lat","type":"double"},{"name":"lon","type":"double"}]}}},
    {"name":"day","type":{"type":"int","logicalType":"date"}},
    {"name":"tod_ms","type":{"type":"int","logicalType":"time-millis"}},
    {"name":"tod_us","type":{"type":"long","logicalType":"time-micros"}},
    {"name":"ts_ms","type":{"type":"long","logicalType":"timestamp-millis"}},
    {"name":"ts_us","type":{"type":"long","logicalType":"timestamp-micros"}},
    {"name":"ts_ns","type":{"type":"long","logicalType":"timestamp-nanos"}},
    {"name":"local_ms","type":{"type":"long","logicalType":"local-timestamp-millis"}},
    {"name":"local_us","type":{"type":"long","logicalType":"local-timestamp-micros"}},
    {"name":"local_ns","type":{"type":"long","logicalType":"local-timestamp-nanos"}},
    {"name":"id","type":{"type":"string","logicalType":"uuid"}},
    {"name":"raw_id","type":{"type":"string","logicalType":"uuid"}}
]}"#;

/// Logical types apache-avro writes but cannot hand to serde as bytes when reading.
pub const WRITE_ONLY: &str = r#"{"type":"record","name":"Extras","namespace":"test","fields":[
    {"name":"amount","type":{"type":"bytes","logicalType":"decimal","precision":30,"scale":2}},
    {"name":"amount_fixed","type":{"type":"fixed","name":"Money","size":8,"logicalType":"decimal","precision":18,"scale":2}},
    {"name":"span","type":{"type":"fixed","name":"Span","size":12,"logicalType":"duration"}},
    {"name":"huge","type":{"type":"bytes","logicalType":"big-decimal"}}
]}"#;

/// Named types used again by reference, and a recursive record.
pub const LEDGER: &str = r#"{"type":"record","name":"Ledger","namespace":"test","fields":[
    {"name":"opening","type":{"type":"record","name":"Amount","fields":[
        {"name":"minor","type":"long"},
        {"name":"currency","type":{"type":"enum","name":"Currency","symbols":["EUR","USD","GBP"]}}]}},
    {"name":"closing","type":"Amount"},
    {"name":"entries","type":{"type":"array","items":"Amount"}},
    {"name":"adjustment","type":["null","Amount"]},
    {"name":"by_account","type":{"type":"map","values":"Amount"}},
    {"name":"preferred","type":"Currency"},
    {"name":"previous","type":["null","Ledger"]}
]}"#;

pub fn schema(text: &str) -> Schema {
    Schema::parse_str(text).unwrap()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Color {
    Red,
    Green,
    Blue,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Shade {
    Light,
    Dark,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub x: i32,
    pub y: f64,
}

/// One Rust variant per union branch, in order (the null branch is the unit variant).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Choice {
    Nothing,
    Number(i32),
    Text(String),
    Point(Point),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spot {
    pub at: i64,
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inner {
    pub label: String,
    pub shade: Shade,
    pub points: Vec<Spot>,
    pub matrix: Vec<Vec<i32>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Place {
    pub lat: f64,
    pub lon: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Everything {
    pub n: (),
    pub flag: bool,
    pub small: i32,
    pub big: i64,
    pub ratio: f32,
    pub precise: f64,
    #[serde(with = "apache_avro::serde_avro_bytes")]
    pub blob: Vec<u8>,
    pub text: String,
    #[serde(with = "apache_avro::serde_avro_fixed")]
    pub digest: [u8; 4],
    pub color: Color,
    pub tags: Vec<String>,
    pub counts: BTreeMap<String, i64>,
    pub maybe_first: Option<String>,
    pub maybe_last: Option<i64>,
    #[serde(with = "apache_avro::serde_avro_bytes_opt")]
    pub maybe_blob: Option<Vec<u8>>,
    pub choice: Choice,
    pub inner: Inner,
    pub spots: BTreeMap<String, Place>,
    pub day: i32,
    pub tod_ms: i32,
    pub tod_us: i64,
    pub ts_ms: i64,
    pub ts_us: i64,
    pub ts_ns: i64,
    pub local_ms: i64,
    pub local_us: i64,
    pub local_ns: i64,
    /// A uuid in its text form.
    pub id: String,
    /// A uuid as `uuid::Uuid` (16 raw bytes in the compact serde form).
    pub raw_id: uuid::Uuid,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Extras {
    #[serde(with = "apache_avro::serde_avro_bytes")]
    pub amount: Vec<u8>,
    #[serde(with = "apache_avro::serde_avro_fixed")]
    pub amount_fixed: [u8; 8],
    #[serde(with = "apache_avro::serde_avro_fixed")]
    pub span: [u8; 12],
    #[serde(with = "apache_avro::serde_avro_bytes")]
    pub huge: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Currency {
    Eur,
    Usd,
    Gbp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Amount {
    pub minor: i64,
    pub currency: Currency,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    pub opening: Amount,
    pub closing: Amount,
    pub entries: Vec<Amount>,
    pub adjustment: Option<Amount>,
    pub by_account: BTreeMap<String, Amount>,
    pub preferred: Currency,
    pub previous: Option<Box<Ledger>>,
}

fn real64() -> impl Strategy<Value = f64> {
    any::<f64>().prop_filter("NaN never equals itself", |x| !x.is_nan())
}

fn real32() -> impl Strategy<Value = f32> {
    any::<f32>().prop_filter("NaN never equals itself", |x| !x.is_nan())
}

fn text() -> impl Strategy<Value = String> {
    ".{0,12}"
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

fn color() -> impl Strategy<Value = Color> {
    prop_oneof![Just(Color::Red), Just(Color::Green), Just(Color::Blue)]
}

fn choice() -> impl Strategy<Value = Choice> {
    prop_oneof![
        Just(Choice::Nothing),
        any::<i32>().prop_map(Choice::Number),
        text().prop_map(Choice::Text),
        (any::<i32>(), real64()).prop_map(|(x, y)| Choice::Point(Point { x, y })),
    ]
}

fn inner() -> impl Strategy<Value = Inner> {
    let spot = (any::<i64>(), proptest::option::of(text())).prop_map(|(at, note)| Spot { at, note });
    (
        text(),
        prop_oneof![Just(Shade::Light), Just(Shade::Dark)],
        proptest::collection::vec(spot, 0..4),
        proptest::collection::vec(proptest::collection::vec(any::<i32>(), 0..4), 0..3),
    )
        .prop_map(|(label, shade, points, matrix)| Inner { label, shade, points, matrix })
}

prop_compose! {
    pub fn everything()(
        (flag, small, big, ratio, precise, blob, text_value, digest) in
            (any::<bool>(), any::<i32>(), any::<i64>(), real32(), real64(), bytes(16), text(), any::<[u8; 4]>()),
        (color, tags, counts, maybe_first, maybe_last, maybe_blob, choice) in (
            color(),
            proptest::collection::vec(text(), 0..4),
            proptest::collection::btree_map(text(), any::<i64>(), 0..4),
            proptest::option::of(text()),
            proptest::option::of(any::<i64>()),
            proptest::option::of(bytes(8)),
            choice(),
        ),
        (inner, spots) in (inner(), proptest::collection::btree_map(text(), (real64(), real64()), 0..3)),
        (day, tod_ms, tod_us, ts_ms, ts_us, ts_ns, local_ms, local_us, local_ns) in
            (any::<i32>(), any::<i32>(), any::<i64>(), any::<i64>(), any::<i64>(), any::<i64>(), any::<i64>(), any::<i64>(), any::<i64>()),
        (id, raw_id) in (any::<u128>(), any::<u128>()),
    ) -> Everything {
        Everything {
            n: (), flag, small, big, ratio, precise, blob, text: text_value, digest, color, tags, counts,
            maybe_first, maybe_last, maybe_blob, choice, inner,
            spots: spots.into_iter().map(|(k, (lat, lon))| (k, Place { lat, lon })).collect(),
            day, tod_ms, tod_us, ts_ms, ts_us, ts_ns, local_ms, local_us, local_ns,
            id: uuid::Uuid::from_u128(id).to_string(),
            raw_id: uuid::Uuid::from_u128(raw_id),
        }
    }
}

fn amount() -> impl Strategy<Value = Amount> {
    (any::<i64>(), prop_oneof![Just(Currency::Eur), Just(Currency::Usd), Just(Currency::Gbp)])
        .prop_map(|(minor, currency)| Amount { minor, currency })
}

pub fn ledger() -> impl Strategy<Value = Ledger> {
    let leaf = (
        amount(),
        amount(),
        proptest::collection::vec(amount(), 0..4),
        proptest::option::of(amount()),
        proptest::collection::btree_map(text(), amount(), 0..3),
        prop_oneof![Just(Currency::Eur), Just(Currency::Usd), Just(Currency::Gbp)],
    )
        .prop_map(|(opening, closing, entries, adjustment, by_account, preferred)| Ledger {
            opening,
            closing,
            entries,
            adjustment,
            by_account,
            preferred,
            previous: None,
        });
    leaf.prop_recursive(4, 8, 1, |inner| {
        (inner.clone(), inner).prop_map(|(mut head, previous)| {
            head.previous = Some(Box::new(previous));
            head
        })
    })
}

/// apache-avro's direct serializer (the codec this crate used before).
pub fn apache_encode<T: Serialize>(schema: &Schema, value: &T) -> Result<Vec<u8>, apache_avro::Error> {
    let mut out = Vec::new();
    apache_avro::write_avro_datum_ref(schema, value, &mut out)?;
    Ok(out)
}

/// apache-avro's reader: bytes → `Value` → `T`.
pub fn apache_decode<T: DeserializeOwned>(schema: &Schema, body: &[u8]) -> Result<T, apache_avro::Error> {
    let value = apache_avro::from_avro_datum(schema, &mut &body[..], None)?;
    apache_avro::from_value(&value)
}

/// The body this crate writes for `value`.
pub fn ours<T: Serialize + ?Sized>(schema: &Schema, value: &T) -> Result<Vec<u8>, CodecError> {
    avro::encode(SchemaId(1), schema, value).map(|framed| framed[avro::HEADER_LEN..].to_vec())
}

/// Both encoders write the same bytes, and both decoders read them back to `value`.
pub fn same_as_apache<T>(schema: &Schema, value: &T) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let body = ours(schema, value).map_err(|e| TestCaseError::fail(format!("ours failed: {e}")))?;
    let reference = apache_encode(schema, value).map_err(|e| TestCaseError::fail(format!("apache failed: {e}")))?;
    prop_assert_eq!(&body, &reference, "the encodings differ");
    let back: T = avro::decode(&body, schema, None).map_err(|e| TestCaseError::fail(format!("ours: {e}")))?;
    let reference_back: T = apache_decode(schema, &body).map_err(|e| TestCaseError::fail(format!("apache: {e}")))?;
    prop_assert_eq!(&back, &reference_back, "the decoders differ");
    prop_assert_eq!(&back, value, "the round trip changed the value");
    Ok(())
}

/// The [`DatumErrorKind`] inside a `Decode`, `Deserialize` or `Encode` error.
pub fn datum_kind(err: &CodecError) -> Option<&DatumErrorKind> {
    match err {
        CodecError::Encode { source, .. }
        | CodecError::Decode { source, .. }
        | CodecError::Deserialize { source, .. } => match source.as_ref() {
            BodyError::Datum(datum) => Some(datum.kind()),
            BodyError::Library(_) => None,
        },
        _ => None,
    }
}

/// Appends `value` as an Avro varint.
pub fn varint(out: &mut Vec<u8>, value: i64) {
    crate::avro::varint::write_long(out, value);
}
