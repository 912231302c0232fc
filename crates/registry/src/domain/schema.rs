//! A schema as submitted: its type, the parsed Avro schema and the canonical form that gives it
//! its identity.
//!
//! Identity: two schema texts are the same schema when their canonical forms are equal. The
//! canonical form is the schema's JSON with object keys sorted, insignificant whitespace removed
//! and `{"type": "<primitive>"}` written as `"<primitive>"`. Unlike Avro's Parsing Canonical Form
//! it keeps defaults, docs, aliases and custom attributes, because two schemas that differ in a
//! default are different for compatibility.

use std::fmt;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The only schema type this registry stores.
pub const AVRO: &str = "AVRO";

const PRIMITIVES: [&str; 8] = ["null", "boolean", "int", "long", "float", "double", "bytes", "string"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("Schema type {0} is not supported: this registry supports AVRO only")]
    UnsupportedType(String),
    #[error("Schema references are not supported by this registry")]
    References,
    #[error("Invalid schema: the schema is empty")]
    Empty,
    #[error("Invalid schema: {0}")]
    InvalidAvro(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaType {
    Avro,
}

impl SchemaType {
    /// `schemaType` from a request: absent means AVRO (as in Confluent's API).
    pub fn parse(value: Option<&str>) -> Result<Self, SchemaError> {
        match value {
            None => Ok(SchemaType::Avro),
            Some(name) if name.eq_ignore_ascii_case(AVRO) => Ok(SchemaType::Avro),
            Some(other) => Err(SchemaError::UnsupportedType(other.to_owned())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SchemaType::Avro => AVRO,
        }
    }
}

/// SHA-256 of the canonical form, hex encoded: the key that makes schema ids global.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fingerprint(String);

impl Fingerprint {
    fn of(canonical: &str) -> Self {
        let digest = Sha256::digest(canonical.as_bytes());
        Self(digest.iter().map(|b| format!("{b:02x}")).collect())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A UUID-shaped id derived from the fingerprint (Confluent's `guid`), stable across
    /// databases: the first 16 bytes of the hash with the version-8 and RFC 4122 variant bits.
    pub fn guid(&self) -> String {
        let hex = &self.0;
        let mut chars: Vec<char> = hex.chars().take(32).collect();
        chars[12] = '8';
        let variant = chars[16].to_digit(16).unwrap_or(0);
        chars[16] = char::from_digit((variant & 0x3) | 0x8, 16).unwrap_or('8');
        let s: String = chars.into_iter().collect();
        format!("{}-{}-{}-{}-{}", &s[0..8], &s[8..12], &s[12..16], &s[16..20], &s[20..32])
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A schema that parsed: the text as submitted, the Avro schema and its identity.
#[derive(Debug, Clone)]
pub struct ParsedSchema {
    text: String,
    avro: apache_avro::Schema,
    canonical: String,
    fingerprint: Fingerprint,
}

impl ParsedSchema {
    /// Parses an Avro schema text; the error carries the parser's message.
    pub fn parse(text: &str) -> Result<Self, SchemaError> {
        if text.trim().is_empty() {
            return Err(SchemaError::Empty);
        }
        let json: Value =
            serde_json::from_str(text).map_err(|e| SchemaError::InvalidAvro(format!("not valid JSON: {e}")))?;
        let avro = apache_avro::Schema::parse(&json).map_err(|e| SchemaError::InvalidAvro(e.to_string()))?;
        let canonical = canonical_json(&json);
        let fingerprint = Fingerprint::of(&canonical);
        Ok(Self { text: text.to_owned(), avro, canonical, fingerprint })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn avro(&self) -> &apache_avro::Schema {
        &self.avro
    }

    pub fn canonical(&self) -> &str {
        &self.canonical
    }

    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    pub fn schema_type(&self) -> SchemaType {
        SchemaType::Avro
    }
}

/// The canonical JSON text of a schema document (see the module docs).
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            if map.len() == 1 {
                if let Some(Value::String(t)) = map.get("type") {
                    if PRIMITIVES.contains(&t.as_str()) {
                        write_canonical(&Value::String(t.clone()), out);
                        return;
                    }
                }
            }
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                if let Some(v) = map.get(key) {
                    write_canonical(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER: &str = r#"{"type":"record","name":"User","namespace":"shop","fields":[
        {"name":"id","type":"string"},{"name":"age","type":"int","default":0}]}"#;

    #[test]
    fn whitespace_and_attribute_order_do_not_change_identity() {
        let reordered = r#"{ "fields": [ {"type": {"type":"string"}, "name": "id"},
            {"default": 0, "name": "age", "type": "int"} ],
            "namespace": "shop", "name": "User", "type": "record" }"#;
        let a = ParsedSchema::parse(USER).unwrap();
        let b = ParsedSchema::parse(reordered).unwrap();
        assert_eq!(a.canonical(), b.canonical());
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint().guid(), b.fingerprint().guid());
    }

    #[test]
    fn field_order_defaults_and_docs_change_identity() {
        let base = ParsedSchema::parse(USER).unwrap();
        let swapped = r#"{"type":"record","name":"User","namespace":"shop","fields":[
            {"name":"age","type":"int","default":0},{"name":"id","type":"string"}]}"#;
        let other_default = USER.replace(r#""default":0"#, r#""default":1"#);
        let with_doc = USER.replace(r#""name":"User","#, r#""name":"User","doc":"a user","#);
        for text in [swapped, other_default.as_str(), with_doc.as_str()] {
            let other = ParsedSchema::parse(text).unwrap();
            assert_ne!(base.fingerprint(), other.fingerprint(), "{text}");
        }
    }

    #[test]
    fn the_text_is_kept_as_submitted() {
        assert_eq!(ParsedSchema::parse(USER).unwrap().text(), USER);
    }

    #[test]
    fn primitive_schemas_parse() {
        let a = ParsedSchema::parse(r#""string""#).unwrap();
        let b = ParsedSchema::parse(r#"{"type": "string"}"#).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn invalid_json_is_reported_with_the_parser_message() {
        let err = ParsedSchema::parse(r#"{"type": "record""#).unwrap_err();
        let SchemaError::InvalidAvro(message) = &err else { panic!("{err:?}") };
        assert!(message.contains("not valid JSON") && message.contains("EOF"), "{message}");
    }

    #[test]
    fn invalid_avro_is_reported_with_the_parser_message() {
        let err =
            ParsedSchema::parse(r#"{"type":"record","name":"R","fields":[{"name":"a","type":"strnig"}]}"#).unwrap_err();
        let SchemaError::InvalidAvro(message) = &err else { panic!("{err:?}") };
        assert!(message.contains("strnig"), "{message}");
        assert!(matches!(ParsedSchema::parse("  "), Err(SchemaError::Empty)));
    }

    #[test]
    fn only_avro_is_supported() {
        assert_eq!(SchemaType::parse(None), Ok(SchemaType::Avro));
        assert_eq!(SchemaType::parse(Some("avro")), Ok(SchemaType::Avro));
        let err = SchemaType::parse(Some("PROTOBUF")).unwrap_err();
        assert!(err.to_string().contains("PROTOBUF") && err.to_string().contains("AVRO only"));
    }

    #[test]
    fn guid_is_a_uuid() {
        let guid = ParsedSchema::parse(USER).unwrap().fingerprint().guid();
        let groups: Vec<usize> = guid.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12], "{guid}");
        assert!(guid.chars().all(|c| c == '-' || c.is_ascii_hexdigit()), "{guid}");
        assert_eq!(&guid[14..15], "8");
    }
}
