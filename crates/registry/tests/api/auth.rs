use reqwest::Method;
use serde_json::json;

use crate::helpers::{record, spawn_app_with, subject, with_token, Db};
use crate::on_both_databases;

on_both_databases!(writes_need_the_bearer_token_reads_do_not);

async fn writes_need_the_bearer_token_reads_do_not(db: Db) {
    let app = spawn_app_with(db, with_token("let-me-write")).await;
    let s = subject("auth");
    let schema = json!({"schema": record("Auth", &[])});
    let register = format!("/subjects/{s}/versions");

    let refused = app.anonymous(Method::POST, &register, Some(&schema)).await;
    let message = refused.assert_error(401, 40101);
    assert!(message.contains("Bearer"), "{message}");
    let wrong = app
        .client
        .post(format!("{}{register}", app.base))
        .bearer_auth("let-me-writ")
        .json(&schema)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    assert_eq!(app.get("/subjects").await.body, json!([]), "refused writes store nothing");

    let accepted = app.post(&register, &schema).await;
    assert_eq!(accepted.status, 200, "{accepted:?}");
    let id = accepted.id();

    // Reads, lookups and compatibility tests are open.
    for path in [
        "/subjects".to_owned(),
        format!("/subjects/{s}/versions"),
        format!("/subjects/{s}/versions/latest"),
        format!("/schemas/ids/{id}"),
        "/config".to_owned(),
        "/schemas/types".to_owned(),
    ] {
        let reply = app.anonymous(Method::GET, &path, None).await;
        assert_eq!(reply.status, 200, "{path}: {reply:?}");
    }
    assert_eq!(app.anonymous(Method::POST, &format!("/subjects/{s}"), Some(&schema)).await.status, 200);
    let compat =
        app.anonymous(Method::POST, &format!("/compatibility/subjects/{s}/versions/latest"), Some(&schema)).await;
    assert_eq!(compat.body, json!({"is_compatible": true}));

    // Every write is guarded.
    let level = json!({"compatibility": "NONE"});
    app.anonymous(Method::PUT, "/config", Some(&level)).await.assert_error(401, 40101);
    app.anonymous(Method::PUT, &format!("/config/{s}"), Some(&level)).await.assert_error(401, 40101);
    app.anonymous(Method::DELETE, &format!("/config/{s}"), None).await.assert_error(401, 40101);
    app.anonymous(Method::DELETE, "/config", None).await.assert_error(401, 40101);
    app.anonymous(Method::DELETE, &format!("/subjects/{s}/versions/1"), None).await.assert_error(401, 40101);
    app.anonymous(Method::DELETE, &format!("/subjects/{s}"), None).await.assert_error(401, 40101);
    assert_eq!(app.get(&format!("/subjects/{s}/versions")).await.body, json!([1]));
    assert_eq!(app.get("/config").await.body, json!({"compatibilityLevel": "BACKWARD"}));

    // The token's owner can do all of it.
    assert_eq!(app.put(&format!("/config/{s}"), &level).await.status, 200);
    assert_eq!(app.delete(&format!("/subjects/{s}")).await.body, json!([1]));
}
