//! The real Python client (confluent-kafka's `SchemaRegistryClient`, `AvroSerializer`,
//! `AvroDeserializer`) against this registry.

use serde_json::{json, Value};

use crate::helpers::{record, spawn_app_with, subject, with_token, Db};

const TOKEN: &str = "python-writes";

const SCRIPT: &str = r#"
import json, sys
from confluent_kafka.schema_registry import SchemaRegistryClient, Schema
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.schema_registry.avro import AvroSerializer, AvroDeserializer
from confluent_kafka.serialization import SerializationContext, MessageField

url, subject, topic, token, v1, v2_compatible, v2_incompatible = sys.argv[1:8]

def client(with_token):
    conf = {"url": url}
    if with_token:
        conf.update({
            "bearer.auth.credentials.source": "STATIC_TOKEN",
            "bearer.auth.token": token,
            "bearer.auth.logical.cluster": "lsrc-eventline",
        })
    return SchemaRegistryClient(conf)

def error(call):
    try:
        call()
        return "no error"
    except SchemaRegistryError as e:
        return {"http": e.http_status_code, "code": e.error_code, "message": e.error_message}

writer, reader = client(True), client(False)
out = {}
out["anonymous_register"] = error(lambda: reader.register_schema(subject, Schema(v1, "AVRO")))
out["id"] = writer.register_schema(subject, Schema(v1, "AVRO"))
out["id_again"] = client(True).register_schema(subject, Schema(v1, "AVRO"))
full = writer.register_schema_full_response(subject, Schema(v2_compatible, "AVRO"))
out["v2"] = {"id": full.schema_id, "version": full.version, "guid": full.guid}
fetched = client(False).get_schema(out["id"])
out["fetched"] = {"schema": json.loads(fetched.schema_str), "type": fetched.schema_type}
latest = reader.get_latest_version(subject)
out["latest"] = {"id": latest.schema_id, "version": latest.version, "subject": latest.subject,
                 "schema": json.loads(latest.schema.schema_str)}
v1_again = reader.get_version(subject, 1)
out["version1"] = {"id": v1_again.schema_id, "version": v1_again.version}
out["versions"] = reader.get_versions(subject)
out["subjects"] = reader.get_subjects()
looked_up = client(False).lookup_schema(subject, Schema(v1, "AVRO"))
out["lookup"] = {"id": looked_up.schema_id, "version": looked_up.version}
out["schema_versions"] = [[sv.subject, sv.version] for sv in reader.get_schema_versions(out["id"])]
out["types"] = reader.get_schema_types()
out["no_subject_config"] = error(lambda: reader.get_compatibility(subject))
out["set_compatibility"] = writer.set_compatibility(subject, "FULL")
out["get_compatibility"] = reader.get_compatibility(subject)
out["global_config"] = reader.get_config().compatibility_level.value
out["test_compatibility"] = reader.test_compatibility(subject, Schema(v2_incompatible, "AVRO"))
out["incompatible"] = error(lambda: writer.register_schema(subject, Schema(v2_incompatible, "AVRO")))

ctx = SerializationContext(topic, MessageField.VALUE)
serializer = AvroSerializer(writer, v1)
payload = serializer({"id": "c-1"}, ctx)
out["wire"] = {"magic": payload[0], "id": int.from_bytes(payload[1:5], "big")}
out["decoded"] = AvroDeserializer(client(False))(payload, ctx)
out["topic_subject_versions"] = reader.get_versions(topic + "-value")

out["deleted"] = writer.delete_subject(subject)
out["deleted_permanently"] = writer.delete_subject(subject, permanent=True)
print(json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_confluent_python_client_works_against_the_registry() {
    let app = spawn_app_with(Db::Sqlite, with_token(TOKEN)).await;
    let s = subject("py-value");
    let topic = subject("py-topic");
    let v1 = record("Customer", &[]);
    let v2_compatible = record("Customer", &[r#"{"name":"age","type":"int","default":0}"#]);
    let v2_incompatible = record("Customer", &[r#"{"name":"age","type":"string","default":""}"#]);
    let args = [app.base.as_str(), &s, &topic, TOKEN, &v1, &v2_compatible, &v2_incompatible];
    let output = eventline_testkit::run_python(SCRIPT, &args).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let out: Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("python printed no JSON ({e}): {stdout}"));

    assert_eq!(out["anonymous_register"]["http"], 401, "{out}");
    assert_eq!(out["anonymous_register"]["code"], 40101, "{out}");
    let id = out["id"].as_i64().expect("an id");
    assert_eq!(out["id_again"], id);
    assert_eq!(out["v2"]["version"], 2);
    let v2_id = out["v2"]["id"].as_i64().expect("v2 id");
    assert_ne!(v2_id, id);
    assert_eq!(out["v2"]["guid"].as_str().map(str::len), Some(36));
    let v1_json: Value = serde_json::from_str(&v1).expect("v1 is JSON");
    assert_eq!(out["fetched"], json!({"schema": v1_json, "type": "AVRO"}));
    let v2_json: Value = serde_json::from_str(&v2_compatible).expect("v2 is JSON");
    assert_eq!(out["latest"], json!({"id": v2_id, "version": 2, "subject": s, "schema": v2_json}));
    assert_eq!(out["version1"], json!({"id": id, "version": 1}));
    assert_eq!(out["versions"], json!([1, 2]));
    assert_eq!(out["subjects"], json!([s]));
    assert_eq!(out["lookup"], json!({"id": id, "version": 1}));
    assert_eq!(out["schema_versions"], json!([[s, 1]]));
    assert_eq!(out["types"], json!(["AVRO"]));
    assert_eq!(out["no_subject_config"]["code"], 40408);
    assert_eq!(out["set_compatibility"], json!({"compatibility": "FULL"}));
    assert_eq!(out["get_compatibility"], "FULL");
    assert_eq!(out["global_config"], "BACKWARD");
    assert_eq!(out["test_compatibility"], false);
    assert_eq!(out["incompatible"]["http"], 409, "{out}");
    assert_eq!(out["incompatible"]["code"], 409, "{out}");
    assert!(out["incompatible"]["message"].as_str().is_some_and(|m| m.contains("age")), "{out}");

    // The serializer registered v1 under "<topic>-value" and got v1's global id.
    assert_eq!(out["wire"], json!({"magic": 0, "id": id}));
    assert_eq!(out["decoded"], json!({"id": "c-1"}));
    assert_eq!(out["topic_subject_versions"], json!([1]));
    assert_eq!(out["deleted"], json!([1, 2]));
    assert_eq!(out["deleted_permanently"], json!([1, 2]));
}
