use super::*;
use crate::catalog::Catalog;
use proptest::prelude::*;
use serde_json::json;

fn order_schema() -> Schema {
    (*Catalog::embedded().unwrap().event("OrderPlaced").unwrap().schema).clone()
}

fn valid_order() -> Json {
    json!({
        "order_id": "o-1", "customer_id": "c-1", "currency": "EUR", "total_minor": 2500,
        "lines": [{"sku": "A", "quantity": 2, "unit_price_minor": 1250}],
        "placed_at": "2026-11-23T10:00:00.250Z"
    })
}

const EVERYTHING: &str = r#"{"type":"record","name":"All","namespace":"t","fields":[
  {"name":"b","type":"boolean"},
  {"name":"i","type":"int"},
  {"name":"d","type":"double"},
  {"name":"s","type":"string","default":"dflt"},
  {"name":"e","type":{"type":"enum","name":"Color","symbols":["RED","GREEN"]}},
  {"name":"opt","type":["null","string"],"default":null},
  {"name":"multi","type":["null","long","string"],"default":null},
  {"name":"m","type":{"type":"map","values":"int"},"default":{}},
  {"name":"day","type":{"type":"int","logicalType":"date"},"default":0},
  {"name":"price","type":["null",{"type":"bytes","logicalType":"decimal","precision":6,"scale":2}],"default":null},
  {"name":"id","type":{"type":"string","logicalType":"uuid"},"default":"00000000-0000-0000-0000-000000000000"},
  {"name":"fx","type":{"type":"fixed","name":"Two","size":2},"default":"ab"},
  {"name":"again","type":["null","Color"],"default":null}
]}"#;

fn everything() -> Schema {
    Schema::parse_str(EVERYTHING).unwrap()
}

fn errors(schema: &Schema, json: Json) -> Vec<FieldError> {
    from_json(schema, &json, "$.data").unwrap_err()
}

#[test]
fn a_valid_order_converts_and_encodes() {
    let schema = order_schema();
    let value = from_json(&schema, &valid_order(), "$").unwrap();
    let Value::Record(fields) = &value else { panic!() };
    assert_eq!(fields[5], ("placed_at".into(), Value::TimestampMillis(1_795_428_000_250)));
    assert!(apache_avro::to_avro_datum(&schema, value).is_ok());
}

#[test]
fn timestamps_also_accept_epoch_integers_in_the_schema_unit() {
    let mut order = valid_order();
    order["placed_at"] = json!(1_795_428_000_250i64);
    let Value::Record(fields) = from_json(&order_schema(), &order, "$").unwrap() else { panic!() };
    assert_eq!(fields[5].1, Value::TimestampMillis(1_795_428_000_250));
}

#[test]
fn every_invalid_field_is_reported_with_its_path() {
    let mut order = valid_order();
    order["total_minor"] = json!("lots");
    order["lines"][0]["quantity"] = json!(2.5);
    order["placed_at"] = json!("yesterday");
    order["colour"] = json!("red");
    order.as_object_mut().unwrap().remove("currency");
    let found = errors(&order_schema(), order);
    let paths: Vec<&str> = found.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        ["$.data.colour", "$.data.lines[0].quantity", "$.data.currency", "$.data.total_minor", "$.data.placed_at"],
        "{found:#?}"
    );
    assert!(found[1].message.contains("int"), "{}", found[1].message);
    assert!(found[2].message.contains("required"), "{}", found[2].message);
    assert!(found[3].message.contains("found a string"), "{}", found[3].message);
    assert!(found[4].message.contains("RFC 3339"), "{}", found[4].message);
}

#[test]
fn defaults_fill_missing_fields_and_unions_take_plain_or_tagged_values() {
    let schema = everything();
    let value = from_json(
        &schema,
        &json!({"b": true, "i": 7, "d": 1, "e": "GREEN", "multi": {"string": "x"}, "price": "12.5", "day": "1970-01-03", "again": "RED"}),
        "$",
    )
    .unwrap();
    let Value::Record(fields) = &value else { panic!() };
    let get = |name: &str| fields.iter().find(|(n, _)| n == name).unwrap().1.clone();
    assert_eq!(get("s"), Value::String("dflt".into()));
    assert_eq!(get("opt"), Value::Union(0, Box::new(Value::Null)));
    assert_eq!(get("multi"), Value::Union(2, Box::new(Value::String("x".into()))));
    assert_eq!(get("e"), Value::Enum(1, "GREEN".into()));
    assert_eq!(get("day"), Value::Date(2));
    assert_eq!(get("price"), Value::Union(1, Box::new(Value::Decimal(apache_avro::Decimal::from(vec![0x04, 0xe2])))));
    assert_eq!(get("again"), Value::Union(1, Box::new(Value::Enum(0, "RED".into()))));
    assert!(apache_avro::to_avro_datum(&schema, value).is_ok());

    let plain = from_json(&schema, &json!({"b": false, "i": 1, "d": 0.5, "e": "RED", "multi": 42}), "$").unwrap();
    let Value::Record(fields) = plain else { panic!() };
    assert_eq!(fields[6].1, Value::Union(1, Box::new(Value::Long(42))));
}

#[test]
fn type_errors_name_what_was_expected() {
    let cases = [
        (json!({"b": 1, "i": 1, "d": 1, "e": "RED"}), "$.data.b", "expected a boolean, found a number"),
        (json!({"b": true, "i": 3_000_000_000i64, "d": 1, "e": "RED"}), "$.data.i", "out of range"),
        (json!({"b": true, "i": 1, "d": "x", "e": "RED"}), "$.data.d", "expected a double"),
        (json!({"b": true, "i": 1, "d": 1, "e": "BLUE"}), "$.data.e", "not one of RED, GREEN"),
        (json!({"b": true, "i": 1, "d": 1, "e": "RED", "multi": true}), "$.data.multi", "one of null, long, string"),
        (json!({"b": true, "i": 1, "d": 1, "e": "RED", "m": {"a b": "x"}}), "$.data.m[\"a b\"]", "expected an int"),
        (json!({"b": true, "i": 1, "d": 1, "e": "RED", "price": "12.345"}), "$.data.price", "more than 2 digits after"),
        (json!({"b": true, "i": 1, "d": 1, "e": "RED", "price": "12345.6"}), "$.data.price", "more than 6 digits"),
        (json!({"b": true, "i": 1, "d": 1, "e": "RED", "id": "nope"}), "$.data.id", "UUID"),
        (json!({"b": true, "i": 1, "d": 1, "e": "RED", "fx": "abc"}), "$.data.fx", "exactly 2 bytes"),
        (json!({"b": true, "i": 1, "d": 1, "e": "RED", "day": "23/11/2026"}), "$.data.day", "YYYY-MM-DD"),
    ];
    for (input, path, message) in cases {
        let found = errors(&everything(), input.clone());
        assert_eq!(found.len(), 1, "{input}: {found:?}");
        assert_eq!(found[0].path, path, "{input}");
        assert!(found[0].message.contains(message), "{input}: {}", found[0].message);
    }
}

#[test]
fn a_non_object_is_refused_at_the_root() {
    let found = errors(&order_schema(), json!([1, 2]));
    assert_eq!(found, vec![FieldError { path: "$.data".into(), message: "expected an object, found an array".into() }]);
}

#[test]
fn negative_and_fixed_decimals_are_twos_complement() {
    assert_eq!(twos_complement(-1, None), Some(vec![0xff]));
    assert_eq!(twos_complement(128, None), Some(vec![0x00, 0x80]));
    assert_eq!(twos_complement(-129, Some(4)), Some(vec![0xff, 0xff, 0xff, 0x7f]));
    assert_eq!(twos_complement(70_000, Some(2)), None);
    assert_eq!(decimal_unscaled(&json!("-0.5"), 4, 2), Ok(-50));
    assert_eq!(decimal_unscaled(&json!(3), 4, 2), Ok(300));
    assert!(decimal_unscaled(&json!("1e5"), 9, 2).is_err());
}

fn arbitrary_json() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Json::String),
        prop_oneof![Just("RED"), Just("2026-11-23T10:00:00Z"), Just("12.5"), Just("o-1")].prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(4, 48, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Json::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("b".to_owned()),
                    Just("i".to_owned()),
                    Just("lines".to_owned()),
                    Just("order_id".to_owned()),
                    "[a-z]{1,6}"
                ],
                inner,
                0..8
            )
            .prop_map(|m| Json::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Random JSON either converts into a value the schema accepts, or yields errors that each
    /// name a path under the root; it never panics.
    #[test]
    fn random_json_converts_or_explains(json in arbitrary_json()) {
        for schema in [order_schema(), everything()] {
            match from_json(&schema, &json, "$.data") {
                Ok(value) => prop_assert!(apache_avro::to_avro_datum(&schema, value).is_ok()),
                Err(found) => {
                    prop_assert!(!found.is_empty());
                    for error in found {
                        prop_assert!(error.path.starts_with("$.data"), "{}", error.path);
                        prop_assert!(!error.message.is_empty());
                    }
                }
            }
        }
    }
}
