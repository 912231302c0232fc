//! The event catalog: event types, their schemas, topics, key fields and partition counts.
//!
//! The catalog is `schemas/catalog.toml` plus one `<Type>.avsc` per event type. It is embedded
//! in every binary ([`Catalog::embedded`]) and can be loaded from a folder ([`Catalog::load_dir`]).
//! Loading validates it: every listed type has a schema that parses, whose record name is the
//! type, whose key field is a string; no type is listed twice; partition counts are positive.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use apache_avro::schema::{RecordSchema, Schema};
use serde::Deserialize;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded_schemas.rs"));
}

pub const CATALOG_FILE: &str = "catalog.toml";

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{CATALOG_FILE} is invalid: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("event type {event} is listed in {CATALOG_FILE} but {event}.avsc is missing")]
    MissingSchema { event: String },
    #[error("{event}.avsc is not a valid Avro schema: {message}")]
    InvalidSchema { event: String, message: String },
    #[error("{event}.avsc must be a record named {event}, found {found}")]
    NotARecord { event: String, found: String },
    #[error("event type {event}: key field `{field}` {problem}")]
    BadKeyField { event: String, field: String, problem: &'static str },
    #[error("event type {event} is listed under more than one topic")]
    Duplicate { event: String },
    #[error("topic {topic}: partitions must be at least 1")]
    BadPartitions { topic: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    topics: Vec<TopicFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TopicFile {
    name: String,
    partitions: i32,
    key_field: String,
    events: Vec<String>,
}

/// A topic and the event types that share it.
#[derive(Debug, Clone)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub key_field: String,
    pub events: Vec<String>,
}

/// One event type: its schema and where it goes.
#[derive(Debug, Clone)]
pub struct EventSpec {
    /// The short type name, e.g. `OrderPlaced`.
    pub name: String,
    /// The record's full name, e.g. `com.eventline.commerce.OrderPlaced` (the CloudEvents type).
    pub full_name: String,
    pub topic: String,
    pub key_field: String,
    /// The schema as written in the `.avsc` file (what gets registered).
    pub schema_json: String,
    pub schema: Arc<Schema>,
}

impl EventSpec {
    /// The registry subject under TopicRecordNameStrategy: `<topic>-<record full name>`.
    pub fn subject(&self) -> String {
        format!("{}-{}", self.topic, self.full_name)
    }
}

#[derive(Debug, Clone)]
pub struct Catalog {
    topics: Vec<TopicSpec>,
    events: BTreeMap<String, EventSpec>,
}

impl Catalog {
    /// The catalog compiled into this binary from the repository's `schemas/`.
    pub fn embedded() -> Result<Self, CatalogError> {
        let files: BTreeMap<&str, &str> = embedded::FILES.iter().copied().collect();
        Self::from_files(|name| files.get(name).map(|s| (*s).to_owned()))
    }

    /// A catalog from a folder laid out like `schemas/`.
    pub fn load_dir(dir: &Path) -> Result<Self, CatalogError> {
        let catalog_path = dir.join(CATALOG_FILE);
        if !catalog_path.exists() {
            return Err(CatalogError::Read {
                path: catalog_path.display().to_string(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            });
        }
        Self::from_files(|name| std::fs::read_to_string(dir.join(name)).ok())
    }

    fn from_files(read: impl Fn(&str) -> Option<String>) -> Result<Self, CatalogError> {
        let text = read(CATALOG_FILE).ok_or_else(|| CatalogError::Read {
            path: CATALOG_FILE.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        })?;
        let file: CatalogFile = toml::from_str(&text)?;
        let mut events = BTreeMap::new();
        let mut topics = Vec::new();
        for topic in file.topics {
            if topic.partitions < 1 {
                return Err(CatalogError::BadPartitions { topic: topic.name });
            }
            for event in &topic.events {
                let spec = load_event(event, &topic, &read)?;
                if events.insert(event.clone(), spec).is_some() {
                    return Err(CatalogError::Duplicate { event: event.clone() });
                }
            }
            topics.push(TopicSpec {
                name: topic.name,
                partitions: topic.partitions,
                key_field: topic.key_field,
                events: topic.events,
            });
        }
        Ok(Self { topics, events })
    }

    pub fn topics(&self) -> &[TopicSpec] {
        &self.topics
    }

    pub fn events(&self) -> impl Iterator<Item = &EventSpec> {
        self.events.values()
    }

    /// An event type by short name (`OrderPlaced`) or full name (`com.eventline.commerce.OrderPlaced`).
    pub fn event(&self, name: &str) -> Option<&EventSpec> {
        self.events.get(name).or_else(|| self.events.values().find(|spec| spec.full_name == name))
    }

    pub fn topic(&self, name: &str) -> Option<&TopicSpec> {
        self.topics.iter().find(|t| t.name == name)
    }
}

fn load_event(
    event: &str,
    topic: &TopicFile,
    read: &impl Fn(&str) -> Option<String>,
) -> Result<EventSpec, CatalogError> {
    let schema_json =
        read(&format!("{event}.avsc")).ok_or_else(|| CatalogError::MissingSchema { event: event.to_owned() })?;
    let schema = Schema::parse_str(&schema_json)
        .map_err(|e| CatalogError::InvalidSchema { event: event.to_owned(), message: e.to_string() })?;
    let Schema::Record(RecordSchema { name, fields, .. }) = &schema else {
        return Err(CatalogError::NotARecord { event: event.to_owned(), found: format!("{:?}", schema_kind(&schema)) });
    };
    if name.name != event {
        return Err(CatalogError::NotARecord { event: event.to_owned(), found: name.fullname(None) });
    }
    let key = fields.iter().find(|f| f.name == topic.key_field).ok_or_else(|| CatalogError::BadKeyField {
        event: event.to_owned(),
        field: topic.key_field.clone(),
        problem: "is not a field of the schema",
    })?;
    if !matches!(key.schema, Schema::String | Schema::Uuid) {
        return Err(CatalogError::BadKeyField {
            event: event.to_owned(),
            field: topic.key_field.clone(),
            problem: "must be a string",
        });
    }
    Ok(EventSpec {
        name: event.to_owned(),
        full_name: name.fullname(None),
        topic: topic.name.clone(),
        key_field: topic.key_field.clone(),
        schema_json,
        schema: Arc::new(schema),
    })
}

fn schema_kind(schema: &Schema) -> apache_avro::schema::SchemaKind {
    apache_avro::schema::SchemaKind::from(schema)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_catalog_is_valid_and_complete() {
        let catalog = Catalog::embedded().unwrap();
        let names: Vec<&str> = catalog.events().map(|e| e.name.as_str()).collect();
        assert_eq!(names.len(), 9, "{names:?}");
        let placed = catalog.event("OrderPlaced").unwrap();
        assert_eq!(placed.topic, "orders");
        assert_eq!(placed.key_field, "order_id");
        assert_eq!(placed.full_name, "com.eventline.commerce.OrderPlaced");
        assert_eq!(placed.subject(), "orders-com.eventline.commerce.OrderPlaced");
        assert!(catalog.event("com.eventline.commerce.PaymentRefunded").is_some());
        assert_eq!(catalog.topic("payments").unwrap().key_field, "order_id");
    }

    #[test]
    fn every_embedded_schema_file_is_in_the_catalog() {
        let catalog = Catalog::embedded().unwrap();
        for (file, _) in embedded::FILES {
            if let Some(event) = file.strip_suffix(".avsc") {
                assert!(catalog.event(event).is_some(), "{file} is not listed in {CATALOG_FILE}");
            }
        }
    }

    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    const TOPIC: &str = "[[topics]]\nname = \"t\"\npartitions = 1\nkey_field = \"id\"\nevents = [\"E\"]\n";

    #[test]
    fn a_missing_schema_is_named() {
        let dir = dir_with(&[(CATALOG_FILE, TOPIC)]);
        let err = Catalog::load_dir(dir.path()).unwrap_err();
        assert!(matches!(err, CatalogError::MissingSchema { ref event } if event == "E"), "{err}");
    }

    #[test]
    fn a_key_field_that_is_not_a_string_is_refused() {
        let schema = r#"{"type":"record","name":"E","fields":[{"name":"id","type":"long"}]}"#;
        let dir = dir_with(&[(CATALOG_FILE, TOPIC), ("E.avsc", schema)]);
        let err = Catalog::load_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("must be a string"), "{err}");
    }

    #[test]
    fn a_missing_key_field_and_a_broken_schema_are_refused() {
        let schema = r#"{"type":"record","name":"E","fields":[{"name":"other","type":"string"}]}"#;
        let dir = dir_with(&[(CATALOG_FILE, TOPIC), ("E.avsc", schema)]);
        assert!(Catalog::load_dir(dir.path()).unwrap_err().to_string().contains("not a field"));
        let dir = dir_with(&[(CATALOG_FILE, TOPIC), ("E.avsc", "{not json")]);
        assert!(matches!(Catalog::load_dir(dir.path()), Err(CatalogError::InvalidSchema { .. })));
    }

    #[test]
    fn unknown_keys_in_the_catalog_are_refused() {
        let dir = dir_with(&[(CATALOG_FILE, "[[topics]]\nname = \"t\"\npartition = 1\n")]);
        assert!(matches!(Catalog::load_dir(dir.path()), Err(CatalogError::Toml(_))));
    }
}
