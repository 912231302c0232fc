//! Schema evolution for every schema of the catalog, through our registry: a field added with a
//! default is a new version and old data reads into it; a field added without one is refused (409).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use apache_avro::types::Value;
use eventline_common::avro::{self, SchemaId};
use eventline_common::catalog::Catalog;
use eventline_common::contracts::Contracts;
use eventline_common::events::{samples, OrderPlaced};
use eventline_common::registry_client::{RegistryClientError, ERROR_INCOMPATIBLE};
use eventline_e2e::TestRegistry;

fn with_field(schema_json: &str, field: serde_json::Value) -> String {
    let mut json: serde_json::Value = serde_json::from_str(schema_json).unwrap();
    json["fields"].as_array_mut().unwrap().push(field);
    json.to_string()
}

#[tokio::test]
async fn every_schema_evolves_backward_compatibly_and_refuses_breaking_changes() {
    let registry = TestRegistry::start().await;
    let contracts = Contracts::register(Catalog::embedded().unwrap(), &registry.client).await.unwrap();
    for event in contracts.events() {
        let subject = event.spec.subject();
        let v2 = with_field(
            &event.spec.schema_json,
            serde_json::json!({"name": "channel", "type": "string", "default": "web", "doc": "added later"}),
        );
        let v2_id = registry.client.register(&subject, &v2).await.unwrap();
        assert_ne!(v2_id, event.schema_id, "{subject}: a changed schema needs a new id");
        assert_eq!(registry.client.latest(&subject).await.unwrap().version, 2, "{subject}");

        let v3 = with_field(&v2, serde_json::json!({"name": "mandatory", "type": "string"}));
        match registry.client.register(&subject, &v3).await {
            Err(RegistryClientError::Refused { status: 409, error_code, .. }) => {
                assert_eq!(error_code, ERROR_INCOMPATIBLE)
            }
            other => panic!("{subject}: a new field without default must be refused with 409, got {other:?}"),
        }
        assert_eq!(
            registry.client.latest(&subject).await.unwrap().version,
            2,
            "{subject}: refused change left a version"
        );
    }
}

#[tokio::test]
async fn old_events_read_with_the_new_schema_fetched_from_the_registry() {
    let registry = TestRegistry::start().await;
    let contracts = Contracts::register(Catalog::embedded().unwrap(), &registry.client).await.unwrap();
    let order = samples::order_placed("o-1");
    let (registered, bytes) = contracts.encode(&order).unwrap();
    let subject = registered.spec.subject();
    let v2_text = with_field(
        &registered.spec.schema_json,
        serde_json::json!({"name": "channel", "type": "string", "default": "web"}),
    );
    let v2_id = registry.client.register(&subject, &v2_text).await.unwrap();

    // The reader is what the registry calls the subject's latest version, fetched by its id as
    // a consumer would; the writer is the id in the frame.
    let latest = registry.client.latest(&subject).await.unwrap();
    assert_eq!((latest.id, latest.version), (v2_id.0, 2), "{subject}: the latest version");
    let reader = registry.client.schema_by_id(SchemaId(latest.id)).await.unwrap();
    let framed = avro::unframe(&bytes).unwrap();
    assert_eq!(framed.schema_id, registered.schema_id, "old data names the first version");
    let writer = registry.client.schema_by_id(framed.schema_id).await.unwrap();
    assert_ne!(writer, reader);

    let value = avro::decode_value(framed.body, &writer, Some(&reader)).unwrap();
    let Value::Record(fields) = &value else { panic!("not a record: {value:?}") };
    assert_eq!(fields.last(), Some(&("channel".to_owned(), Value::String("web".into()))));
    let back: OrderPlaced = avro::decode(framed.body, &writer, Some(&reader)).unwrap();
    assert_eq!(back, order);
}
