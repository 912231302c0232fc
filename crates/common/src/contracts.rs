//! The catalog's schemas registered with a schema registry: event type → schema id.
//!
//! Producers register (or look up) every schema of the catalog at start-up under its
//! TopicRecordNameStrategy subject, then encode with the id the registry gave.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use crate::avro::{self, CodecError, SchemaId};
use crate::catalog::{Catalog, EventSpec};
use crate::events::DomainEvent;
use crate::registry_client::{RegistryClient, RegistryClientError};

#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    #[error("cannot register {subject}: {source}")]
    Register {
        subject: String,
        #[source]
        source: RegistryClientError,
    },
    #[error("event type {0} is not in the catalog")]
    UnknownEventType(String),
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// An event type with the schema id the registry assigned to it.
#[derive(Debug, Clone)]
pub struct RegisteredEvent {
    pub spec: EventSpec,
    pub schema_id: SchemaId,
}

/// Every event type of a catalog, registered.
#[derive(Debug, Clone)]
pub struct Contracts {
    catalog: Arc<Catalog>,
    events: BTreeMap<String, RegisteredEvent>,
}

impl Contracts {
    /// Registers every schema of `catalog` (an identical schema keeps its id).
    pub async fn register(catalog: Catalog, client: &RegistryClient) -> Result<Self, ContractError> {
        let mut events = BTreeMap::new();
        for spec in catalog.events() {
            let subject = spec.subject();
            let schema_id = client
                .register(&subject, &spec.schema_json)
                .await
                .map_err(|source| ContractError::Register { subject, source })?;
            events.insert(spec.name.clone(), RegisteredEvent { spec: spec.clone(), schema_id });
        }
        Ok(Self { catalog: Arc::new(catalog), events })
    }

    /// Contracts whose ids are already known (tests, tools that looked them up).
    pub fn with_ids(catalog: Catalog, id_of: impl Fn(&EventSpec) -> SchemaId) -> Self {
        let events = catalog
            .events()
            .map(|spec| (spec.name.clone(), RegisteredEvent { spec: spec.clone(), schema_id: id_of(spec) }))
            .collect();
        Self { catalog: Arc::new(catalog), events }
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// By short name (`OrderPlaced`) or full name.
    pub fn event(&self, name: &str) -> Option<&RegisteredEvent> {
        let spec = self.catalog.event(name)?;
        self.events.get(&spec.name)
    }

    pub fn events(&self) -> impl Iterator<Item = &RegisteredEvent> {
        self.events.values()
    }

    /// Encodes a typed event with its registered schema.
    pub fn encode<E: DomainEvent + Serialize>(&self, event: &E) -> Result<(&RegisteredEvent, Vec<u8>), ContractError> {
        let registered = self.event(E::NAME).ok_or_else(|| ContractError::UnknownEventType(E::NAME.to_owned()))?;
        let bytes = avro::encode(registered.schema_id, &registered.spec.schema, event)?;
        Ok((registered, bytes))
    }
}
