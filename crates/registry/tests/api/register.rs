use serde_json::json;

use crate::helpers::{record, spawn_app, subject, Db, V1_CONTENT_TYPE};
use crate::on_both_databases;

on_both_databases!(
    register_then_read_by_id_list_and_versions,
    identical_schema_returns_the_same_id_without_a_new_version,
    the_same_schema_under_two_subjects_has_one_id,
    lookup_finds_the_version_holding_a_schema,
    subjects_with_reserved_characters_round_trip,
);

async fn register_then_read_by_id_list_and_versions(db: Db) {
    let app = spawn_app(db).await;
    let s = subject("orders-value");
    let v1 = record("Order", &[]);
    let first = app.register(&s, &v1).await;
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(first.content_type.as_deref(), Some(V1_CONTENT_TYPE));
    assert_eq!(first.version(), 1);
    let id1 = first.id();
    assert!(first.body["guid"].as_str().is_some_and(|g| g.len() == 36), "{first:?}");

    let by_id = app.get(&format!("/schemas/ids/{id1}?subject={s}&format=resolved&fetchMaxId=false")).await;
    assert_eq!(by_id.status, 200, "{by_id:?}");
    assert_eq!(by_id.body["schema"], v1.as_str(), "the text comes back as registered");
    assert_eq!(by_id.body["guid"], first.body["guid"]);
    let by_guid = app.get(&format!("/schemas/guids/{}", first.body["guid"].as_str().unwrap())).await;
    assert_eq!(by_guid.body["schema"], v1.as_str());
    let raw = app.get(&format!("/schemas/ids/{id1}/schema")).await;
    assert_eq!(raw.text, v1);

    let v2 = record("Order", &[r#"{"name":"note","type":"string","default":""}"#]);
    let second = app.register(&s, &v2).await;
    assert_eq!((second.status, second.version()), (200, 2), "{second:?}");
    let id2 = second.id();
    assert_ne!(id1, id2);

    assert_eq!(app.get(&format!("/subjects/{s}/versions")).await.body, json!([1, 2]));
    let subjects = app.get("/subjects").await;
    assert_eq!(subjects.body, json!([s]));
    for latest in ["latest", "-1", "2"] {
        let reply = app.get(&format!("/subjects/{s}/versions/{latest}")).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.body["subject"], s.as_str());
        assert_eq!((reply.id(), reply.version()), (id2, 2), "{latest}");
        assert_eq!(reply.body["schema"], v2.as_str());
    }
    let first_version = app.get(&format!("/subjects/{s}/versions/1")).await;
    assert_eq!((first_version.id(), first_version.version()), (id1, 1));
    assert_eq!(app.get(&format!("/subjects/{s}/versions/1/schema")).await.text, v1);
    assert_eq!(app.get(&format!("/subjects/{s}/versions/2/referencedby")).await.body, json!([]));
    assert_eq!(app.get(&format!("/schemas/ids/{id2}/versions")).await.body, json!([{"subject": s, "version": 2}]));
    assert_eq!(app.get("/schemas/types").await.body, json!(["AVRO"]));
}

async fn identical_schema_returns_the_same_id_without_a_new_version(db: Db) {
    let app = spawn_app(db).await;
    let s = subject("customers-value");
    let compact = record("Customer", &[r#"{"name":"age","type":"int","default":0}"#]);
    let spaced = r#"{
        "namespace": "shop", "type": "record", "name": "Customer",
        "fields": [ {"type": {"type": "string"}, "name": "id"}, {"default": 0, "type": "int", "name": "age"} ]
    }"#;
    let first = app.register(&s, &compact).await;
    let again = app.register(&s, &compact).await;
    let reformatted = app.register(&s, spaced).await;
    assert_eq!(first.status, 200, "{first:?}");
    for reply in [&again, &reformatted] {
        assert_eq!((reply.status, reply.id(), reply.version()), (200, first.id(), 1), "{reply:?}");
    }
    assert_eq!(app.get(&format!("/subjects/{s}/versions")).await.body, json!([1]));
    // A schema that differs only in a default is another schema.
    let other_default = compact.replace(r#""default":0"#, r#""default":1"#);
    let changed = app.register(&s, &other_default).await;
    assert_eq!(changed.version(), 2, "{changed:?}");
    assert_ne!(changed.id(), first.id());
}

async fn the_same_schema_under_two_subjects_has_one_id(db: Db) {
    let app = spawn_app(db).await;
    let (a, b) = (subject("a-value"), subject("b-value"));
    let schema = record("Shared", &[]);
    let in_a = app.register(&a, &schema).await;
    let in_b = app.register(&b, &schema).await;
    assert_eq!(in_a.id(), in_b.id());
    assert_eq!((in_a.version(), in_b.version()), (1, 1));
    let mut expected = vec![a.clone(), b.clone()];
    expected.sort();
    assert_eq!(app.get(&format!("/schemas/ids/{}/subjects", in_a.id())).await.body, json!(expected));
    let versions = app.get(&format!("/schemas/ids/{}/versions", in_a.id())).await.body;
    assert_eq!(versions.as_array().map(Vec::len), Some(2), "{versions}");
    let only_a = app.get(&format!("/schemas/ids/{}/subjects?subject={a}", in_a.id())).await;
    assert_eq!(only_a.body, json!([a]));
}

async fn lookup_finds_the_version_holding_a_schema(db: Db) {
    let app = spawn_app(db).await;
    let s = subject("lookup-value");
    let v1 = record("L", &[]);
    let v2 = record("L", &[r#"{"name":"x","type":"long","default":0}"#]);
    let id1 = app.register(&s, &v1).await.id();
    app.register(&s, &v2).await;
    let found = app.post(&format!("/subjects/{s}?normalize=False&deleted=False"), &json!({"schema": v1})).await;
    assert_eq!(found.status, 200, "{found:?}");
    assert_eq!((found.id(), found.version()), (id1, 1));
    assert_eq!(found.body["subject"], s.as_str());
    assert_eq!(found.body["schema"], v1.as_str());

    let unknown = app.post(&format!("/subjects/{s}"), &json!({"schema": record("Other", &[])})).await;
    unknown.assert_error(404, 40403);
    let no_subject = app.post(&format!("/subjects/{}", subject("none")), &json!({"schema": v1})).await;
    no_subject.assert_error(404, 40401);
}

/// Clients percent-encode subjects (`/` too); the subject is stored decoded.
async fn subjects_with_reserved_characters_round_trip(db: Db) {
    let app = spawn_app(db).await;
    let name = format!("{}:orders/v1 value", subject("ctx"));
    let encoded = name.replace('/', "%2F").replace(' ', "%20").replace(':', "%3A");
    let registered = app.register(&encoded, &record("Enc", &[])).await;
    assert_eq!(registered.status, 200, "{registered:?}");
    assert_eq!(registered.body["subject"], name.as_str());
    assert_eq!(app.get("/subjects").await.body, json!([name]));
    assert_eq!(app.get(&format!("/subjects/{encoded}/versions/latest")).await.version(), 1);
}
