use reqwest::header::CONTENT_TYPE;
use serde_json::json;

use crate::helpers::{record, send, spawn_app, spawn_app_with, subject, Db};
use crate::on_both_databases;

on_both_databases!(not_found_codes, invalid_input_codes, content_types_and_body_limits);

async fn not_found_codes(db: Db) {
    let app = spawn_app(db).await;
    let s = subject("err");
    let missing = subject("missing");
    app.register(&s, &record("E", &[])).await;

    let message = app.get(&format!("/subjects/{missing}/versions")).await.assert_error(404, 40401).to_owned();
    assert_eq!(message, format!("Subject '{missing}' not found."));
    app.get(&format!("/subjects/{missing}/versions/latest")).await.assert_error(404, 40401);
    let message = app.get(&format!("/subjects/{s}/versions/42")).await.assert_error(404, 40402).to_owned();
    assert_eq!(message, "Version 42 not found.");
    let message = app.get("/schemas/ids/987654").await.assert_error(404, 40403).to_owned();
    assert_eq!(message, "Schema 987654 not found");
    app.get("/schemas/ids/not-a-number").await.assert_error(404, 40403);
    app.get("/schemas/ids/987654/versions").await.assert_error(404, 40403);
    app.get("/schemas/guids/00000000-0000-0000-0000-000000000000").await.assert_error(404, 40403);
    app.get(&format!("/config/{missing}")).await.assert_error(404, 40408);
    app.get("/no/such/route").await.assert_error(404, 404);
    app.put("/schemas/types", &json!({})).await.assert_error(405, 405);
}

async fn invalid_input_codes(db: Db) {
    let app = spawn_app(db).await;
    let s = subject("bad");
    let versions = format!("/subjects/{s}/versions");

    let typo = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"strnig"}]}"#;
    let message = app.register(&s, typo).await.assert_error(422, 42201).to_owned();
    assert!(message.starts_with("Invalid schema") && message.contains("strnig"), "{message}");

    let message = app.register(&s, r#"{"type": "record", "#).await.assert_error(422, 42201).to_owned();
    assert!(message.contains("not valid JSON") && message.contains("line 1"), "{message}");

    let proto = json!({"schema": "syntax = \"proto3\";", "schemaType": "PROTOBUF"});
    let message = app.post(&versions, &proto).await.assert_error(422, 42201).to_owned();
    assert!(message.contains("PROTOBUF") && message.contains("AVRO"), "{message}");

    let with_refs = json!({"schema": record("R", &[]), "references": [{"name": "x", "subject": "y", "version": 1}]});
    app.post(&versions, &with_refs).await.assert_error(422, 42201);
    app.post(&versions, &json!({"schemaType": "AVRO"})).await.assert_error(422, 42201);
    app.post(&versions, &json!(["not", "an", "object"])).await.assert_error(422, 42201);

    // A malformed request body (not JSON at all).
    let raw = app.client.post(format!("{}{versions}", app.base)).header(CONTENT_TYPE, "application/json");
    let message = send(raw.body("{schema: nope")).await.assert_error(422, 42201).to_owned();
    assert!(message.contains("not valid JSON"), "{message}");

    app.register(&s, &record("R", &[])).await;
    for bad in ["0", "-2", "abc", "2147483648"] {
        let message = app.get(&format!("{versions}/{bad}")).await.assert_error(422, 42202).to_owned();
        assert!(message.contains(&format!("'{bad}'")), "{message}");
    }
    app.delete(&format!("{versions}/0")).await.assert_error(422, 42202);
    app.put("/config", &json!({"compatibility": "MAYBE"})).await.assert_error(422, 42203);
    assert_eq!(app.get(&versions).await.body, json!([1]), "nothing invalid was stored");
}

async fn content_types_and_body_limits(db: Db) {
    let settings = eventline_registry::RegistrySettings { max_body_bytes: 4096, ..Default::default() };
    let app = spawn_app_with(db, settings).await;
    let s = subject("ct");
    let body = json!({"schema": record("CT", &[])}).to_string();
    let url = format!("{}/subjects/{s}/versions", app.base);
    for content_type in [
        Some("application/vnd.schemaregistry.v1+json"),
        Some("application/vnd.schemaregistry+json"),
        Some("application/json"),
        Some("application/json; charset=utf-8"),
        None,
    ] {
        let mut request = app.client.post(&url).body(body.clone());
        if let Some(ct) = content_type {
            request = request.header(CONTENT_TYPE, ct);
        }
        let reply = send(request).await;
        assert_eq!((reply.status, reply.version()), (200, 1), "{content_type:?}: {reply:?}");
    }
    let text = send(app.client.post(&url).header(CONTENT_TYPE, "text/plain").body(body.clone())).await;
    let message = text.assert_error(415, 415);
    assert!(message.contains("text/plain"), "{message}");

    let padding = "x".repeat(5000);
    let big = json!({"schema": record("Big", &[&format!(r#"{{"name":"p","type":"string","default":"{padding}"}}"#)])});
    let too_large = app.post(&format!("/subjects/{s}/versions"), &big).await;
    let message = too_large.assert_error(413, 413);
    assert!(message.contains("4096"), "{message}");
}
