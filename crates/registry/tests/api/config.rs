use serde_json::json;

use crate::helpers::{spawn_app, subject, Db};
use crate::on_both_databases;

const LEVELS: [&str; 7] =
    ["BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE", "NONE"];

on_both_databases!(subject_and_global_levels, invalid_levels_are_refused);

async fn subject_and_global_levels(db: Db) {
    let app = spawn_app(db).await;
    assert_eq!(app.get("/config").await.body, json!({"compatibilityLevel": "BACKWARD"}));
    let s = subject("cfg");
    let other = subject("cfg-other");

    for level in LEVELS {
        let put = app.put(&format!("/config/{s}"), &json!({"compatibility": level})).await;
        assert_eq!((put.status, &put.body), (200, &json!({"compatibility": level})), "{put:?}");
        assert_eq!(app.get(&format!("/config/{s}")).await.body, json!({"compatibilityLevel": level}));
    }
    // Lower case is accepted and answered in upper case.
    let lower = app.put(&format!("/config/{s}"), &json!({"compatibility": "forward"})).await;
    assert_eq!(lower.body, json!({"compatibility": "FORWARD"}));

    app.get(&format!("/config/{other}")).await.assert_error(404, 40408);
    let fallback = app.get(&format!("/config/{other}?defaultToGlobal=true")).await;
    assert_eq!(fallback.body, json!({"compatibilityLevel": "BACKWARD"}));

    for level in LEVELS {
        let put = app.put("/config", &json!({"compatibility": level})).await;
        assert_eq!(put.body, json!({"compatibility": level}));
        assert_eq!(app.get("/config").await.body, json!({"compatibilityLevel": level}));
        let fallback = app.get(&format!("/config/{other}?defaultToGlobal=true")).await;
        assert_eq!(fallback.body, json!({"compatibilityLevel": level}));
    }
    // The subject's own level is untouched by the global one.
    assert_eq!(app.get(&format!("/config/{s}")).await.body, json!({"compatibilityLevel": "FORWARD"}));

    let deleted = app.delete(&format!("/config/{s}")).await;
    assert_eq!(deleted.body, json!({"compatibilityLevel": "FORWARD"}));
    app.get(&format!("/config/{s}")).await.assert_error(404, 40408);
    app.delete(&format!("/config/{s}")).await.assert_error(404, 40408);

    let reset = app.delete("/config").await;
    assert_eq!(reset.body, json!({"compatibilityLevel": "NONE"}));
    assert_eq!(app.get("/config").await.body, json!({"compatibilityLevel": "BACKWARD"}));
}

async fn invalid_levels_are_refused(db: Db) {
    let app = spawn_app(db).await;
    let s = subject("cfg");
    let sideways = app.put(&format!("/config/{s}"), &json!({"compatibility": "SIDEWAYS"})).await;
    let message = sideways.assert_error(422, 42203);
    assert!(message.contains("SIDEWAYS"), "{message}");
    app.put("/config", &json!({"compatibility": "SIDEWAYS"})).await.assert_error(422, 42203);
    app.put("/config", &json!({})).await.assert_error(422, 42203);
    app.put("/config", &json!("FULL")).await.assert_error(422, 42203);
    assert_eq!(app.get("/config").await.body, json!({"compatibilityLevel": "BACKWARD"}));
}
