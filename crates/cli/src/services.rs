//! Every Eventline service, in one place: its binary, its name in `docker-compose.yml`, and the
//! settings it must be given outside `eventline up` (where the defaults point at loopback).
//! A test checks `docker-compose.yml` against this list.

use eventline_common::config::Section;

pub struct ServiceSpec {
    /// The service's name in docker-compose.yml.
    pub compose_name: &'static str,
    /// Its binary (the image's entrypoint for it).
    pub binary: &'static str,
    /// `(section, key)` pairs that must be set in a deployment.
    pub required: &'static [(Section, &'static str)],
}

pub const SERVICES: &[ServiceSpec] = &[
    ServiceSpec {
        compose_name: "eventline-registry",
        binary: "eventline-registry",
        required: &[(Section::Database, "url"), (Section::Registry, "listen")],
    },
    ServiceSpec {
        compose_name: "eventline-http-ingest",
        binary: "eventline-http-ingest",
        required: &[
            (Section::Kafka, "bootstrap_servers"),
            (Section::SchemaRegistry, "url"),
            (Section::Database, "url"),
            (Section::Ingest, "listen"),
        ],
    },
    ServiceSpec {
        compose_name: "eventline-projector",
        binary: "eventline-projector",
        required: &[
            (Section::Kafka, "bootstrap_servers"),
            (Section::SchemaRegistry, "url"),
            (Section::Database, "url"),
            (Section::Projector, "listen"),
        ],
    },
    ServiceSpec {
        compose_name: "eventline-outbox-relay",
        binary: "eventline-outbox-relay",
        required: &[
            (Section::Kafka, "bootstrap_servers"),
            (Section::SchemaRegistry, "url"),
            (Section::OutboxRelay, "database_url"),
            (Section::OutboxRelay, "listen"),
        ],
    },
    ServiceSpec {
        compose_name: "eventline-admin",
        binary: "eventline",
        required: &[
            (Section::Kafka, "bootstrap_servers"),
            (Section::SchemaRegistry, "url"),
            (Section::Database, "url"),
            (Section::Admin, "listen"),
            (Section::Admin, "token"),
        ],
    },
];

/// The one-shot that prepares a cluster (`eventline setup`).
pub const SETUP: ServiceSpec = ServiceSpec {
    compose_name: "eventline-setup",
    binary: "eventline",
    required: &[(Section::Kafka, "bootstrap_servers"), (Section::SchemaRegistry, "url")],
};
