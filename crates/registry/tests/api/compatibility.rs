use serde_json::json;

use crate::helpers::{record, spawn_app, subject, Db};
use crate::on_both_databases;

const AGE_REQUIRED: &str = r#"{"name":"age","type":"int"}"#;
const AGE_DEFAULT: &str = r#"{"name":"age","type":"int","default":0}"#;

on_both_databases!(
    an_incompatible_change_is_refused_with_409,
    compatibility_endpoints_answer_without_registering,
    each_level_decides_what_is_accepted,
    transitive_levels_check_every_version,
);

async fn an_incompatible_change_is_refused_with_409(db: Db) {
    let app = spawn_app(db).await;
    let s = subject("payments-value");
    app.register(&s, &record("Payment", &[])).await;
    let refused = app.register(&s, &record("Payment", &[AGE_REQUIRED])).await;
    let message = refused.assert_error(409, 409);
    assert!(message.contains(&s) && message.contains("age"), "{message}");
    assert!(message.contains("version 1"), "{message}");
    assert_eq!(app.get(&format!("/subjects/{s}/versions")).await.body, json!([1]));
}

async fn compatibility_endpoints_answer_without_registering(db: Db) {
    let app = spawn_app(db).await;
    let s = subject("compat-value");
    let bad = json!({"schema": record("C", &[AGE_REQUIRED])});
    let good = json!({"schema": record("C", &[AGE_DEFAULT])});
    // No versions yet: anything is compatible with "latest" and with "all".
    let empty = app.post(&format!("/compatibility/subjects/{s}/versions/latest"), &bad).await;
    assert_eq!((empty.status, &empty.body), (200, &json!({"is_compatible": true})), "{empty:?}");
    app.register(&s, &record("C", &[])).await;

    for path in
        [format!("/compatibility/subjects/{s}/versions/latest"), format!("/compatibility/subjects/{s}/versions")]
    {
        let no = app.post(&format!("{path}?normalize=False&verbose=False"), &bad).await;
        assert_eq!(no.body, json!({"is_compatible": false}), "{path}");
        let verbose = app.post(&format!("{path}?verbose=true"), &bad).await;
        let messages = verbose.body["messages"].as_array().cloned().unwrap_or_default();
        assert!(messages.iter().any(|m| m.as_str().is_some_and(|m| m.contains("age"))), "{verbose:?}");
        assert_eq!(app.post(&path, &good).await.body, json!({"is_compatible": true}), "{path}");
    }
    let by_number = app.post(&format!("/compatibility/subjects/{s}/versions/1"), &bad).await;
    assert_eq!(by_number.body, json!({"is_compatible": false}));
    app.post(&format!("/compatibility/subjects/{s}/versions/7"), &good).await.assert_error(404, 40402);
    let unknown = subject("unknown");
    app.post(&format!("/compatibility/subjects/{unknown}/versions/1"), &good).await.assert_error(404, 40401);
    assert_eq!(app.get(&format!("/subjects/{s}/versions")).await.body, json!([1]), "tests register nothing");
}

/// One history per level: adding a required field, then removing one.
async fn each_level_decides_what_is_accepted(db: Db) {
    let app = spawn_app(db).await;
    // (level, add a required field accepted, remove a required field accepted)
    let cases = [
        ("BACKWARD", false, true),
        ("BACKWARD_TRANSITIVE", false, true),
        ("FORWARD", true, false),
        ("FORWARD_TRANSITIVE", true, false),
        ("FULL", false, false),
        ("FULL_TRANSITIVE", false, false),
        ("NONE", true, true),
    ];
    for (level, add_ok, remove_ok) in cases {
        let adding = subject("add");
        app.set_level(&adding, level).await;
        app.register(&adding, &record("A", &[])).await;
        let added = app.register(&adding, &record("A", &[AGE_REQUIRED])).await;
        assert_eq!(added.status == 200, add_ok, "{level} add: {added:?}");

        let removing = subject("remove");
        app.set_level(&removing, level).await;
        app.register(&removing, &record("A", &[AGE_REQUIRED])).await;
        let removed = app.register(&removing, &record("A", &[])).await;
        assert_eq!(removed.status == 200, remove_ok, "{level} remove: {removed:?}");
        if !remove_ok {
            removed.assert_error(409, 409);
        }
    }
}

/// v1 {id}, v2 {id, email=""}, then v3 {id, email (required)}: v3 reads v2 data but not v1.
async fn transitive_levels_check_every_version(db: Db) {
    let app = spawn_app(db).await;
    let email_default = r#"{"name":"email","type":"string","default":""}"#;
    let email_required = r#"{"name":"email","type":"string"}"#;
    for (level, accepted) in [("BACKWARD", true), ("BACKWARD_TRANSITIVE", false)] {
        let s = subject("transitive");
        app.set_level(&s, level).await;
        assert_eq!(app.register(&s, &record("T", &[])).await.version(), 1);
        assert_eq!(app.register(&s, &record("T", &[email_default])).await.version(), 2);
        let v3 = app.register(&s, &record("T", &[email_required])).await;
        assert_eq!(v3.status == 200, accepted, "{level}: {v3:?}");
        if !accepted {
            let message = v3.assert_error(409, 409);
            assert!(message.contains("version 1") && !message.contains("version 2"), "{message}");
        }
    }
}
