use serde_json::json;

use crate::helpers::{record, spawn_app, subject, Db};
use crate::on_both_databases;

on_both_databases!(versions_are_soft_then_permanently_deleted, subjects_are_soft_then_permanently_deleted);

async fn versions_are_soft_then_permanently_deleted(db: Db) {
    let app = spawn_app(db).await;
    let s = subject("del");
    app.register(&s, &record("D", &[])).await;
    app.register(&s, &record("D", &[r#"{"name":"n","type":"int","default":0}"#])).await;
    let v = format!("/subjects/{s}/versions");

    app.delete(&format!("{v}/2?permanent=true")).await.assert_error(404, 40407);
    let soft = app.delete(&format!("{v}/2")).await;
    assert_eq!((soft.status, &soft.body), (200, &json!(2)), "{soft:?}");
    assert_eq!(app.get(&v).await.body, json!([1]));
    assert_eq!(app.get(&format!("{v}?deleted=true")).await.body, json!([1, 2]));
    assert_eq!(app.get(&format!("{v}?deleted_only=true")).await.body, json!([2]));
    app.get(&format!("{v}/2")).await.assert_error(404, 40402);
    assert_eq!(app.get(&format!("{v}/2?deleted=true")).await.version(), 2);
    assert_eq!(app.get(&format!("{v}/latest")).await.version(), 1, "latest skips deleted versions");
    app.delete(&format!("{v}/2")).await.assert_error(404, 40406);

    let hard = app.delete(&format!("{v}/2?permanent=true")).await;
    assert_eq!(hard.body, json!(2));
    assert_eq!(app.get(&format!("{v}?deleted=true")).await.body, json!([1]));
    app.delete(&format!("{v}/9")).await.assert_error(404, 40402);
    app.delete(&format!("{v}/latest")).await;
    app.delete(&format!("{v}/1")).await.assert_error(404, 40401);
}

async fn subjects_are_soft_then_permanently_deleted(db: Db) {
    let app = spawn_app(db).await;
    let s = subject("gone");
    let keep = subject("kept");
    let schema = record("G", &[]);
    let id = app.register(&s, &schema).await.id();
    app.register(&keep, &record("K", &[])).await;
    app.put(&format!("/config/{s}"), &json!({"compatibility": "NONE"})).await;

    app.delete(&format!("/subjects/{s}?permanent=true")).await.assert_error(404, 40405);
    let soft = app.delete(&format!("/subjects/{s}")).await;
    assert_eq!((soft.status, &soft.body), (200, &json!([1])), "{soft:?}");
    assert_eq!(app.get("/subjects").await.body, json!([keep]));
    let mut both = vec![s.clone(), keep.clone()];
    both.sort();
    assert_eq!(app.get("/subjects?deleted=true").await.body, json!(both));
    assert_eq!(app.get("/subjects?deleted_only=true").await.body, json!([s]));
    app.get(&format!("/subjects/{s}/versions")).await.assert_error(404, 40401);
    app.delete(&format!("/subjects/{s}")).await.assert_error(404, 40404);
    assert_eq!(app.get(&format!("/schemas/ids/{id}")).await.status, 200, "soft-deleted schemas still decode");

    let hard = app.delete(&format!("/subjects/{s}?permanent=true")).await;
    assert_eq!(hard.body, json!([1]));
    assert_eq!(app.get("/subjects?deleted=true").await.body, json!([keep]));
    app.get(&format!("/schemas/ids/{id}")).await.assert_error(404, 40403);
    app.get(&format!("/config/{s}")).await.assert_error(404, 40408);
    app.delete(&format!("/subjects/{s}")).await.assert_error(404, 40401);

    // Registering it again starts at version 1 and keeps the schema's global id.
    let again = app.register(&s, &schema).await;
    assert_eq!((again.id(), again.version()), (id, 1), "{again:?}");
}
