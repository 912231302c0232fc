//! Avro values from JSON, checked against a schema, with every problem's JSON path.
//!
//! This is how data from upstream systems enters (HTTP bodies, NDJSON lines, outbox rows): JSON
//! in, an Avro [`Value`] that fits the schema out, or the complete list of what is wrong. Missing
//! fields take their schema defaults; unknown fields are refused (a typo must not vanish).
//! Logical types accept their natural JSON forms: timestamps as RFC 3339 strings or epoch
//! integers, dates as `YYYY-MM-DD`, decimals as strings like `"12.30"` (or numbers), UUIDs as
//! strings. A union takes either the plain value or Avro's JSON form `{"type name": value}`.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use apache_avro::schema::{Name, ResolvedSchema, Schema};
use apache_avro::types::Value;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use serde_json::Value as Json;

/// One thing wrong with the input: where (a JSON path such as `$.data.lines[1].quantity`) and what.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Converts `json` into a value of `schema`; `path` names where `json` sits (e.g. `$.data`).
pub fn from_json(schema: &Schema, json: &Json, path: &str) -> Result<Value, Vec<FieldError>> {
    // Only a schema that refers to a named type by name needs the names resolved (per call,
    // since they borrow the schema); the catalog's schemas do not.
    let empty = HashMap::new();
    let resolved = if crate::avro::has_named_references(schema) {
        Some(ResolvedSchema::try_from(schema).map_err(|e| {
            vec![FieldError { path: path.to_owned(), message: format!("the schema itself is unusable: {e}") }]
        })?)
    } else {
        None
    };
    let names = resolved.as_ref().map_or(&empty, |r| r.get_names());
    let mut converter = Converter { names, errors: Vec::new() };
    let value = converter.convert(schema, json, &mut path.to_owned(), None);
    if converter.errors.is_empty() {
        Ok(value)
    } else {
        Err(converter.errors)
    }
}

struct Converter<'s> {
    names: &'s HashMap<Name, &'s Schema>,
    errors: Vec<FieldError>,
}

fn kind(json: &Json) -> &'static str {
    match json {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

impl<'s> Converter<'s> {
    fn fail(&mut self, path: &str, message: impl Into<String>) -> Value {
        self.errors.push(FieldError { path: path.to_owned(), message: message.into() });
        Value::Null
    }

    fn expected(&mut self, path: &str, what: &str, json: &Json) -> Value {
        self.fail(path, format!("expected {what}, found {}", kind(json)))
    }

    fn convert(&mut self, schema: &'s Schema, json: &Json, path: &mut String, namespace: Option<&str>) -> Value {
        match schema {
            Schema::Null => match json {
                Json::Null => Value::Null,
                other => self.expected(path, "null", other),
            },
            Schema::Boolean => match json {
                Json::Bool(b) => Value::Boolean(*b),
                other => self.expected(path, "a boolean", other),
            },
            Schema::Int => match json.as_i64().map(i32::try_from) {
                Some(Ok(n)) => Value::Int(n),
                Some(Err(_)) => self.fail(path, "expected an int (32-bit), the number is out of range"),
                None => self.expected(path, "an int (32-bit integer)", json),
            },
            Schema::Long => match json.as_i64() {
                Some(n) => Value::Long(n),
                None if json.is_u64() => self.fail(path, "expected a long (64-bit), the number is out of range"),
                None => self.expected(path, "a long (64-bit integer)", json),
            },
            Schema::Float => match json.as_f64() {
                Some(n) => Value::Float(n as f32),
                None => self.expected(path, "a float", json),
            },
            Schema::Double => match json.as_f64() {
                Some(n) => Value::Double(n),
                None => self.expected(path, "a double", json),
            },
            Schema::String => match json {
                Json::String(s) => Value::String(s.clone()),
                other => self.expected(path, "a string", other),
            },
            Schema::Bytes => match latin1_bytes(json) {
                Some(bytes) => Value::Bytes(bytes),
                None => self.expected(path, "bytes as a string of code points 0-255", json),
            },
            Schema::Fixed(fixed) => match latin1_bytes(json) {
                Some(bytes) if bytes.len() == fixed.size => Value::Fixed(fixed.size, bytes),
                Some(bytes) => self.fail(path, format!("expected exactly {} bytes, found {}", fixed.size, bytes.len())),
                None => self.expected(path, "fixed bytes as a string of code points 0-255", json),
            },
            Schema::Enum(e) => match json {
                Json::String(s) => match e.symbols.iter().position(|sym| sym == s) {
                    Some(index) => Value::Enum(index as u32, s.clone()),
                    None => self.fail(path, format!("`{s}` is not one of {}", e.symbols.join(", "))),
                },
                other => self.expected(path, &format!("one of {}", e.symbols.join(", ")), other),
            },
            Schema::Array(array) => match json {
                Json::Array(items) => {
                    let mut out = Vec::with_capacity(items.len());
                    for (i, item) in items.iter().enumerate() {
                        let len = path.len();
                        path.push_str(&format!("[{i}]"));
                        out.push(self.convert(&array.items, item, path, namespace));
                        path.truncate(len);
                    }
                    Value::Array(out)
                }
                other => self.expected(path, "an array", other),
            },
            Schema::Map(map) => match json {
                Json::Object(entries) => {
                    let mut out = HashMap::with_capacity(entries.len());
                    for (key, item) in entries {
                        let len = path.len();
                        push_key(path, key);
                        out.insert(key.clone(), self.convert(&map.types, item, path, namespace));
                        path.truncate(len);
                    }
                    Value::Map(out)
                }
                other => self.expected(path, "an object (map)", other),
            },
            Schema::Union(union) => self.union(union.variants(), json, path, namespace),
            Schema::Record(record) => {
                let Json::Object(object) = json else { return self.expected(path, "an object", json) };
                let inner_ns = record.name.namespace.as_deref().or(namespace);
                for key in object.keys() {
                    if !record.fields.iter().any(|f| &f.name == key) {
                        let len = path.len();
                        push_key(path, key);
                        self.fail(path, format!("unknown field (the {} schema has no `{key}`)", record.name.name));
                        path.truncate(len);
                    }
                }
                let mut fields = Vec::with_capacity(record.fields.len());
                for field in &record.fields {
                    let len = path.len();
                    push_key(path, &field.name);
                    let value = match (object.get(&field.name), &field.default) {
                        (Some(given), _) => self.convert(&field.schema, given, path, inner_ns),
                        (None, Some(default)) => self.default(&field.schema, default, path, inner_ns),
                        (None, None) => {
                            self.fail(path, format!("required field is missing ({})", describe(&field.schema)))
                        }
                    };
                    path.truncate(len);
                    fields.push((field.name.clone(), value));
                }
                Value::Record(fields)
            }
            Schema::Ref { name } => {
                let full = name.fully_qualified_name(&namespace.map(str::to_owned));
                match self.names.get(&full).or_else(|| self.names.get(name)) {
                    Some(target) => self.convert(target, json, path, namespace),
                    None => self.fail(path, format!("the schema refers to unknown type {}", full.fullname(None))),
                }
            }
            Schema::Uuid => match json.as_str().map(uuid::Uuid::parse_str) {
                Some(Ok(id)) => Value::Uuid(id),
                Some(Err(e)) => self.fail(path, format!("expected a UUID: {e}")),
                None => self.expected(path, "a UUID string", json),
            },
            Schema::Date => match json {
                Json::String(s) => match NaiveDate::parse_from_str(s, "%Y-%m-%d") {
                    Ok(date) => Value::Date((date - NaiveDate::default()).num_days() as i32),
                    Err(_) => self.fail(path, format!("expected a date YYYY-MM-DD, found `{s}`")),
                },
                Json::Number(_) => match json.as_i64().and_then(|n| i32::try_from(n).ok()) {
                    Some(days) => Value::Date(days),
                    None => self.fail(path, "expected days since 1970-01-01 as an int"),
                },
                other => self.expected(path, "a date YYYY-MM-DD", other),
            },
            Schema::TimeMillis | Schema::TimeMicros => {
                let micros = match json {
                    Json::String(s) => NaiveTime::from_str(s).ok().map(|t| {
                        i64::from(t.num_seconds_from_midnight()) * 1_000_000 + i64::from(t.nanosecond() / 1000)
                    }),
                    Json::Number(_) => {
                        json.as_i64().map(|n| if matches!(schema, Schema::TimeMillis) { n * 1000 } else { n })
                    }
                    _ => None,
                };
                match (micros, schema) {
                    (Some(us), Schema::TimeMillis) => Value::TimeMillis((us / 1000) as i32),
                    (Some(us), _) => Value::TimeMicros(us),
                    (None, _) => self.expected(path, "a time of day HH:MM:SS[.fff]", json),
                }
            }
            Schema::TimestampMillis | Schema::TimestampMicros | Schema::TimestampNanos => {
                match timestamp_nanos(json, schema, false) {
                    Some(ns) => timestamp_value(schema, ns),
                    None => self.expected(
                        path,
                        "a timestamp (RFC 3339 string such as 2026-11-23T10:00:00Z, or an epoch integer)",
                        json,
                    ),
                }
            }
            Schema::LocalTimestampMillis | Schema::LocalTimestampMicros | Schema::LocalTimestampNanos => {
                match timestamp_nanos(json, schema, true) {
                    Some(ns) => timestamp_value(schema, ns),
                    None => self.expected(
                        path,
                        "a local date-time such as 2026-11-23T10:00:00 (no offset), or an integer",
                        json,
                    ),
                }
            }
            Schema::Decimal(decimal) => match decimal_unscaled(json, decimal.precision, decimal.scale) {
                Ok(unscaled) => {
                    let size = match decimal.inner.as_ref() {
                        Schema::Fixed(fixed) => Some(fixed.size),
                        _ => None,
                    };
                    match twos_complement(unscaled, size) {
                        Some(bytes) => Value::Decimal(apache_avro::Decimal::from(bytes)),
                        None => self.fail(path, "the decimal does not fit the fixed size of the schema"),
                    }
                }
                Err(message) => self.fail(path, message),
            },
            Schema::BigDecimal => match json {
                Json::String(s) => match apache_avro::BigDecimal::from_str(s) {
                    Ok(d) => Value::BigDecimal(d),
                    Err(_) => self.fail(path, format!("expected a decimal number, found `{s}`")),
                },
                Json::Number(n) => match apache_avro::BigDecimal::from_str(&n.to_string()) {
                    Ok(d) => Value::BigDecimal(d),
                    Err(_) => self.fail(path, "expected a decimal number"),
                },
                other => self.expected(path, "a decimal number", other),
            },
            Schema::Duration => self.fail(path, "the duration logical type is not accepted as JSON input"),
        }
    }

    fn union(&mut self, variants: &'s [Schema], json: &Json, path: &mut String, namespace: Option<&str>) -> Value {
        if json.is_null() {
            return match variants.iter().position(|v| matches!(v, Schema::Null)) {
                Some(i) => Value::Union(i as u32, Box::new(Value::Null)),
                None => self.expected(path, &format!("one of {}", union_names(variants)), json),
            };
        }
        // Avro's JSON encoding: {"branch type name": value}.
        if let Json::Object(object) = json {
            if object.len() == 1 {
                if let Some((branch, inner)) = object.iter().next() {
                    if let Some(i) = variants.iter().position(|v| branch_name(v) == *branch) {
                        let value = self.convert(&variants[i], inner, path, namespace);
                        return Value::Union(i as u32, Box::new(value));
                    }
                }
            }
        }
        // The plain value: the first branch it fits.
        for (i, variant) in variants.iter().enumerate() {
            if matches!(variant, Schema::Null) {
                continue;
            }
            let mut trial = Converter { names: self.names, errors: Vec::new() };
            let value = trial.convert(variant, json, path, namespace);
            if trial.errors.is_empty() {
                return Value::Union(i as u32, Box::new(value));
            }
        }
        // No branch fits: report against the only non-null branch when there is one.
        let non_null: Vec<(usize, &'s Schema)> =
            variants.iter().enumerate().filter(|(_, v)| !matches!(v, Schema::Null)).collect();
        if let [(i, only)] = non_null.as_slice() {
            let value = self.convert(only, json, path, namespace);
            return Value::Union(*i as u32, Box::new(value));
        }
        self.expected(path, &format!("one of {}", union_names(variants)), json)
    }

    /// A field's default: for a union, a value of its first branch (the Avro rule).
    fn default(&mut self, schema: &'s Schema, default: &Json, path: &mut String, namespace: Option<&str>) -> Value {
        match schema {
            Schema::Union(union) => match union.variants().first() {
                Some(first) => Value::Union(0, Box::new(self.convert(first, default, path, namespace))),
                None => self.fail(path, "empty union in schema"),
            },
            other => self.convert(other, default, path, namespace),
        }
    }
}

fn push_key(path: &mut String, key: &str) {
    if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        path.push('.');
        path.push_str(key);
    } else {
        path.push_str(&format!("[{}]", Json::String(key.to_owned())));
    }
}

fn latin1_bytes(json: &Json) -> Option<Vec<u8>> {
    json.as_str()?.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect()
}

fn branch_name(schema: &Schema) -> String {
    match schema.name() {
        Some(name) => name.fullname(None),
        None => describe(schema),
    }
}

fn union_names(variants: &[Schema]) -> String {
    variants.iter().map(branch_name).collect::<Vec<_>>().join(", ")
}

/// A short description of a schema for messages: `string`, `array of long`, `OrderLine`, …
fn describe(schema: &Schema) -> String {
    match schema {
        Schema::Array(a) => format!("array of {}", describe(&a.items)),
        Schema::Map(m) => format!("map of {}", describe(&m.types)),
        Schema::Union(u) => format!("one of {}", union_names(u.variants())),
        other => match other.name() {
            Some(name) => name.name.clone(),
            None => format!("{:?}", apache_avro::schema::SchemaKind::from(other)).to_lowercase(),
        },
    }
}

/// Nanoseconds since the epoch from an RFC 3339 string (or, for local timestamps, a naive one)
/// or an integer in the schema's own unit.
fn timestamp_nanos(json: &Json, schema: &Schema, local: bool) -> Option<i128> {
    let unit: i128 = match schema {
        Schema::TimestampMillis | Schema::LocalTimestampMillis => 1_000_000,
        Schema::TimestampMicros | Schema::LocalTimestampMicros => 1_000,
        _ => 1,
    };
    match json {
        Json::Number(_) => json.as_i64().map(|n| i128::from(n) * unit),
        Json::String(s) if local => NaiveDateTime::from_str(s).ok().map(|t| {
            i128::from(t.and_utc().timestamp()) * 1_000_000_000 + i128::from(t.and_utc().timestamp_subsec_nanos())
        }),
        Json::String(s) => DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| i128::from(t.timestamp()) * 1_000_000_000 + i128::from(t.timestamp_subsec_nanos())),
        _ => None,
    }
}

fn timestamp_value(schema: &Schema, nanos: i128) -> Value {
    let clamp = |n: i128| i64::try_from(n).unwrap_or(if n < 0 { i64::MIN } else { i64::MAX });
    match schema {
        Schema::TimestampMillis => Value::TimestampMillis(clamp(nanos.div_euclid(1_000_000))),
        Schema::TimestampMicros => Value::TimestampMicros(clamp(nanos.div_euclid(1_000))),
        Schema::TimestampNanos => Value::TimestampNanos(clamp(nanos)),
        Schema::LocalTimestampMillis => Value::LocalTimestampMillis(clamp(nanos.div_euclid(1_000_000))),
        Schema::LocalTimestampMicros => Value::LocalTimestampMicros(clamp(nanos.div_euclid(1_000))),
        _ => Value::LocalTimestampNanos(clamp(nanos)),
    }
}

/// The unscaled integer of a decimal given as `"-12.30"` or a JSON number, checked against
/// precision and scale.
fn decimal_unscaled(json: &Json, precision: usize, scale: usize) -> Result<i128, String> {
    let text = match json {
        Json::String(s) => s.trim().to_owned(),
        Json::Number(n) => n.to_string(),
        other => return Err(format!("expected a decimal such as \"12.30\", found {}", kind(other))),
    };
    let invalid = || format!("expected a decimal such as \"12.30\", found `{text}`");
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(&text)),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole.chars().all(|c| c.is_ascii_digit())
        || !fraction.chars().all(|c| c.is_ascii_digit())
    {
        return Err(invalid());
    }
    let fraction = fraction.trim_end_matches('0');
    if fraction.len() > scale {
        return Err(format!("`{text}` has more than {scale} digits after the decimal point"));
    }
    let whole = whole.trim_start_matches('0');
    if whole.len() + scale > precision {
        return Err(format!("`{text}` has more than {precision} digits in total (scale {scale})"));
    }
    let mut unscaled_digits = format!("{whole}{fraction}");
    unscaled_digits.extend(std::iter::repeat_n('0', scale - fraction.len()));
    let magnitude = if unscaled_digits.trim_start_matches('0').is_empty() {
        0
    } else {
        i128::from_str(&unscaled_digits).map_err(|_| invalid())?
    };
    Ok(if negative { -magnitude } else { magnitude })
}

/// Big-endian two's complement, minimal length, or sign-extended to `size`.
fn twos_complement(value: i128, size: Option<usize>) -> Option<Vec<u8>> {
    let full = value.to_be_bytes();
    let fill = if value < 0 { 0xff } else { 0x00 };
    let mut start = 0;
    while start < full.len() - 1 && full[start] == fill && (full[start + 1] & 0x80) == (fill & 0x80) {
        start += 1;
    }
    let minimal = &full[start..];
    match size {
        None => Some(minimal.to_vec()),
        Some(size) if minimal.len() <= size => {
            let mut out = vec![fill; size - minimal.len()];
            out.extend_from_slice(minimal);
            Some(out)
        }
        Some(_) => None,
    }
}

#[cfg(test)]
#[path = "avro_json_tests.rs"]
mod tests;
