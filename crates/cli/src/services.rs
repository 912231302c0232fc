//! Every Eventline service, in one place. The consumer services are [`CONSUMERS`]: adding one is
//! one line there. `eventline up` starts each of them, `eventline run <name>` one, the config's
//! `[consumers.*]` tables are checked against their names, and a test checks
//! `docker-compose.yml` against [`specs`].

use std::path::Path;

use eventline_common::config::{ConfigSource, Section};
use eventline_common::service::ServiceEntry;
use eventline_order_counter::OrderCounter;
use eventline_projector::ProjectorService;

/// The consumer services, in the order `eventline up` starts them; a rebuildable one
/// (`eventline rebuild <name>`) is registered with [`ServiceEntry::rebuildable`].
pub const CONSUMERS: &[ServiceEntry] =
    &[ServiceEntry::rebuildable::<ProjectorService>(), ServiceEntry::of::<OrderCounter>()];

/// The consumer service called `name`.
pub fn consumer(name: &str) -> Option<&'static ServiceEntry> {
    CONSUMERS.iter().find(|entry| entry.name == name)
}

pub fn consumer_names() -> Vec<&'static str> {
    CONSUMERS.iter().map(|entry| entry.name).collect()
}

/// The consumer services whose tables can be rebuilt.
pub fn rebuildable_names() -> Vec<&'static str> {
    CONSUMERS.iter().filter(|entry| entry.rebuild().is_some()).map(|entry| entry.name).collect()
}

/// The configuration every `eventline` command reads: the file (or `EVENTLINE_CONFIG`) and the
/// environment, with `[consumers.<name>]` tables checked against [`CONSUMERS`].
pub fn config(file: Option<&Path>) -> anyhow::Result<ConfigSource> {
    let source = ConfigSource::load(file)?;
    source.check_consumers(&consumer_names())?;
    Ok(source)
}

/// A service as docker-compose.yml runs it.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    /// The service's name in docker-compose.yml.
    pub compose_name: String,
    /// Its binary (the image's entrypoint for it).
    pub binary: &'static str,
    /// The arguments it is started with.
    pub command: Vec<String>,
    /// Environment variables that must be set in a deployment (where the defaults point at
    /// loopback).
    pub required: Vec<String>,
}

impl ServiceSpec {
    fn new(compose_name: &str, binary: &'static str, command: &[&str], required: &[(Section, &str)]) -> Self {
        Self {
            compose_name: compose_name.to_owned(),
            binary,
            command: command.iter().map(|arg| (*arg).to_owned()).collect(),
            required: required.iter().map(|(section, key)| section.env_var(key)).collect(),
        }
    }
}

/// Every long-running service: the fixed ones, then one per consumer service.
pub fn specs() -> Vec<ServiceSpec> {
    let mut specs = vec![
        ServiceSpec::new(
            "eventline-registry",
            "eventline-registry",
            &[],
            &[(Section::Database, "url"), (Section::Registry, "listen")],
        ),
        ServiceSpec::new(
            "eventline-http-ingest",
            "eventline-http-ingest",
            &[],
            &[
                (Section::Kafka, "bootstrap_servers"),
                (Section::SchemaRegistry, "url"),
                (Section::Database, "url"),
                (Section::Ingest, "listen"),
            ],
        ),
        ServiceSpec::new(
            "eventline-outbox-relay",
            "eventline-outbox-relay",
            &[],
            &[
                (Section::Kafka, "bootstrap_servers"),
                (Section::SchemaRegistry, "url"),
                (Section::OutboxRelay, "database_url"),
                (Section::OutboxRelay, "listen"),
            ],
        ),
        ServiceSpec::new(
            "eventline-admin",
            "eventline",
            &["admin"],
            &[
                (Section::Kafka, "bootstrap_servers"),
                (Section::SchemaRegistry, "url"),
                (Section::Database, "url"),
                (Section::Admin, "listen"),
                (Section::Admin, "token"),
            ],
        ),
    ];
    for entry in CONSUMERS {
        let mut spec = ServiceSpec::new(
            &compose_name(entry.name),
            "eventline",
            &["run", entry.name],
            &[(Section::Kafka, "bootstrap_servers"), (Section::SchemaRegistry, "url"), (Section::Database, "url")],
        );
        spec.required.push(listen_env(entry.name));
        specs.push(spec);
    }
    specs
}

/// The one-shot that prepares a cluster (`eventline setup`).
pub fn setup() -> ServiceSpec {
    ServiceSpec::new(
        "eventline-setup",
        "eventline",
        &["setup"],
        &[(Section::Kafka, "bootstrap_servers"), (Section::SchemaRegistry, "url")],
    )
}

/// `eventline-<name>` with dashes: `order_counter` is `eventline-order-counter`.
pub fn compose_name(consumer: &str) -> String {
    format!("eventline-{}", consumer.replace('_', "-"))
}

/// `EVENTLINE_CONSUMERS__<NAME>__LISTEN`.
pub fn listen_env(consumer: &str) -> String {
    Section::Consumers.env_var(&format!("{consumer}__listen"))
}
