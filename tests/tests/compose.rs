//! docker-compose.yml is for users with Docker; here it is checked by parsing it: the broker is
//! Apache Kafka in KRaft mode, Confluent Schema Registry and PostgreSQL are there, every
//! Eventline service the code defines is there, and every EVENTLINE_ variable it sets is one the
//! code accepts, pointing at the right service.

#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(clippy::result_large_err)] // figment's test jail returns its own large error type

use std::collections::BTreeMap;
use std::path::PathBuf;

use eventline_cli::admin::AdminSettings;
use eventline_cli::services::{self, ServiceSpec, CONSUMERS};
use eventline_cli::settings::UpSettings;
use eventline_common::config::Section;
use eventline_common::db::DatabaseSettings;
use eventline_common::kafka::KafkaSettings;
use eventline_common::registry_client::SchemaRegistrySettings;
use eventline_common::telemetry::TelemetrySettings;
use eventline_http_ingest::IngestSettings;
use eventline_outbox_relay::OutboxRelaySettings;
use eventline_registry::RegistrySettings;
use serde_yaml::Value;

fn compose() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docker-compose.yml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut value: Value = serde_yaml::from_str(&text).unwrap();
    value.apply_merge().unwrap();
    value
}

fn service<'a>(compose: &'a Value, name: &str) -> &'a Value {
    let service = &compose["services"][name];
    assert!(!service.is_null(), "docker-compose.yml has no service `{name}`");
    service
}

fn environment(service: &Value) -> BTreeMap<String, String> {
    let Some(map) = service["environment"].as_mapping() else { return BTreeMap::new() };
    map.iter()
        .map(|(k, v)| {
            let value = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                other => panic!("unexpected env value {other:?}"),
            };
            (k.as_str().unwrap().to_owned(), value)
        })
        .collect()
}

fn host_port(url: &str) -> String {
    let without_scheme = url.split("://").last().unwrap();
    let after_userinfo = without_scheme.rsplit('@').next().unwrap();
    after_userinfo.split('/').next().unwrap().to_owned()
}

#[test]
fn the_infrastructure_is_kafka_in_kraft_mode_confluent_registry_and_postgres() {
    let compose = compose();
    let kafka = service(&compose, "kafka");
    let image = kafka["image"].as_str().unwrap();
    let version = image.strip_prefix("apache/kafka:").unwrap_or_else(|| panic!("not Apache Kafka's image: {image}"));
    let major_minor = |v: &str| v.split('.').take(2).collect::<Vec<_>>().join(".");
    assert_eq!(
        major_minor(version),
        major_minor(eventline_common::kafka::local_broker::KAFKA_VERSION),
        "compose runs Apache Kafka {version}, the tests and `eventline up` {}",
        eventline_common::kafka::local_broker::KAFKA_VERSION
    );
    let env = environment(kafka);
    assert!(env["KAFKA_PROCESS_ROLES"].contains("controller"), "KRaft needs a controller role");
    assert!(env.contains_key("KAFKA_CONTROLLER_QUORUM_VOTERS"));
    assert_eq!(env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"], "false", "topics come from the catalog via eventline setup");
    assert!(compose["services"]["zookeeper"].is_null(), "KRaft mode has no ZooKeeper");
    assert!(service(&compose, "schema-registry")["image"]
        .as_str()
        .unwrap()
        .starts_with("confluentinc/cp-schema-registry:"));
    assert!(service(&compose, "postgres")["image"].as_str().unwrap().starts_with("postgres:"));
}

fn check_service(compose: &Value, spec: &ServiceSpec) {
    let service = service(compose, &spec.compose_name);
    let entrypoint = service["entrypoint"].as_sequence().map(|s| s[0].as_str().unwrap().to_owned());
    let binary = entrypoint.unwrap_or_else(|| "eventline".to_owned());
    assert_eq!(binary, spec.binary, "{}: wrong binary", spec.compose_name);
    let command: Vec<String> = service["command"]
        .as_sequence()
        .map(|args| args.iter().map(|a| a.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    assert_eq!(command, spec.command, "{}: wrong command", spec.compose_name);
    let env = environment(service);
    for var in &spec.required {
        assert!(env.contains_key(var), "{} must set {var}", spec.compose_name);
    }

    // Every setting parses with the code's own types, with no unknown section or key.
    figment::Jail::expect_with(|jail| {
        for (name, value) in &env {
            assert!(name.starts_with("EVENTLINE_"), "{}: unexpected variable {name}", spec.compose_name);
            jail.set_env(name, value);
        }
        let source = services::config(None).unwrap_or_else(|e| panic!("{}: {e:#}", spec.compose_name));
        let _: TelemetrySettings = source.section(Section::Telemetry).unwrap_or_else(|e| panic!("{e}"));
        let _: UpSettings = source.section(Section::Up).unwrap_or_else(|e| panic!("{e}"));
        let _: RegistrySettings = source.section(Section::Registry).unwrap_or_else(|e| panic!("{e}"));
        let ingest: IngestSettings = source.section(Section::Ingest).unwrap_or_else(|e| panic!("{e}"));
        if spec.compose_name == "eventline-http-ingest" {
            assert!(ingest.listen.starts_with("0.0.0.0:"), "ingest must listen beyond loopback in its container");
        }
        for consumer in CONSUMERS {
            let listen = consumer.listen(&source).unwrap_or_else(|e| panic!("{}: {e:#}", consumer.name));
            if spec.compose_name == services::compose_name(consumer.name) {
                assert!(
                    listen.starts_with("0.0.0.0:"),
                    "{} must listen beyond loopback in its container",
                    consumer.name
                );
            }
        }
        let relay: OutboxRelaySettings = source.section(Section::OutboxRelay).unwrap_or_else(|e| panic!("{e}"));
        if relay.is_enabled() {
            assert_eq!(
                host_port(relay.database_url.expose()),
                "postgres:5432",
                "the outbox lives in the stack's PostgreSQL"
            );
            assert!(
                relay.listen.starts_with("0.0.0.0:"),
                "{}: listen beyond loopback in a container",
                spec.compose_name
            );
        }
        let admin: AdminSettings = source.section(Section::Admin).unwrap_or_else(|e| panic!("{e}"));
        if spec.compose_name == "eventline-admin" {
            assert!(admin.listen.starts_with("0.0.0.0:"), "the admin API must listen beyond loopback in its container");
        }
        let kafka: KafkaSettings = source.section(Section::Kafka).unwrap_or_else(|e| panic!("{e}"));
        let registry: SchemaRegistrySettings =
            source.section(Section::SchemaRegistry).unwrap_or_else(|e| panic!("{e}"));
        let database: DatabaseSettings = source.section(Section::Database).unwrap_or_else(|e| panic!("{e}"));
        // ...and points at services that exist, on the ports they listen on.
        assert_eq!(kafka.bootstrap_servers, "kafka:9092");
        let advertised = environment(&compose["services"]["kafka"])["KAFKA_ADVERTISED_LISTENERS"].clone();
        assert!(advertised.contains("//kafka:9092"), "kafka does not advertise kafka:9092: {advertised}");
        assert_eq!(host_port(&registry.url), "schema-registry:8081");
        assert_eq!(host_port(&database.url), "postgres:5432");
        let pg = environment(&compose["services"]["postgres"]);
        let expected = format!(
            "postgres://{0}:{1}@postgres:5432/{2}",
            pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"], pg["POSTGRES_DB"]
        );
        assert_eq!(database.url, expected);
        Ok(())
    });
}

#[test]
fn every_eventline_service_is_in_compose_with_the_settings_it_needs() {
    let compose = compose();
    for spec in services::specs().iter().chain([&services::setup()]) {
        check_service(&compose, spec);
    }
    let dockerfile = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../Dockerfile");
    assert!(dockerfile.exists(), "compose builds the image from the Dockerfile");
}

#[test]
fn the_registry_service_listens_beyond_loopback_inside_its_container() {
    let compose = compose();
    let env = environment(service(&compose, "eventline-registry"));
    assert!(env[&Section::Registry.env_var("listen")].starts_with("0.0.0.0:"));
}
