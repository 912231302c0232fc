use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::json;
use tokio::task::JoinSet;

use crate::helpers::{record, spawn_app, subject, Db, TestApp};
use crate::on_both_databases;

const TASKS: usize = 20;

on_both_databases!(
    concurrent_registrations_of_one_schema_agree,
    concurrent_registrations_of_different_schemas_get_versions_without_gaps,
    concurrent_registrations_in_many_subjects_share_one_id,
);

/// Runs `TASKS` registrations at once; returns `(id, version)` of each.
async fn register_all(app: &Arc<TestApp>, requests: Vec<(String, String)>) -> Vec<(i64, i64)> {
    let mut tasks = JoinSet::new();
    for (s, schema) in requests {
        let app = app.clone();
        tasks.spawn(async move {
            let reply = app.register(&s, &schema).await;
            assert_eq!(reply.status, 200, "{reply:?}");
            (reply.id(), reply.version())
        });
    }
    let mut results = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        results.push(joined.expect("task"));
    }
    results
}

async fn concurrent_registrations_of_one_schema_agree(db: Db) {
    let app = Arc::new(spawn_app(db).await);
    let s = subject("same");
    let schema = record("Same", &[]);
    let results = register_all(&app, vec![(s.clone(), schema); TASKS]).await;
    let distinct: BTreeSet<_> = results.iter().collect();
    assert_eq!(distinct.len(), 1, "{results:?}");
    assert_eq!(results[0].1, 1);
    assert_eq!(app.get(&format!("/subjects/{s}/versions")).await.body, json!([1]));
}

async fn concurrent_registrations_of_different_schemas_get_versions_without_gaps(db: Db) {
    let app = Arc::new(spawn_app(db).await);
    let s = subject("many");
    // Each adds its own optional field: all are BACKWARD compatible with each other.
    let requests: Vec<(String, String)> = (0..TASKS)
        .map(|i| (s.clone(), record("Many", &[&format!(r#"{{"name":"f{i}","type":"int","default":0}}"#)])))
        .collect();
    let results = register_all(&app, requests).await;
    let ids: BTreeSet<i64> = results.iter().map(|r| r.0).collect();
    let versions: BTreeSet<i64> = results.iter().map(|r| r.1).collect();
    assert_eq!(ids.len(), TASKS, "one id per schema: {results:?}");
    assert_eq!(versions, (1..=TASKS as i64).collect(), "versions 1..n, no gaps or duplicates");
    let listed = app.get(&format!("/subjects/{s}/versions")).await.body;
    assert_eq!(listed, json!((1..=TASKS as i64).collect::<Vec<_>>()));
    for (id, version) in results {
        let stored = app.get(&format!("/subjects/{s}/versions/{version}")).await;
        assert_eq!(stored.id(), id, "version {version} holds the schema it was answered with");
    }
}

async fn concurrent_registrations_in_many_subjects_share_one_id(db: Db) {
    let app = Arc::new(spawn_app(db).await);
    let schema = record("Everywhere", &[]);
    let subjects: Vec<String> = (0..TASKS).map(|i| subject(&format!("s{i}"))).collect();
    let results = register_all(&app, subjects.iter().map(|s| (s.clone(), schema.clone())).collect()).await;
    let distinct: BTreeSet<_> = results.iter().collect();
    assert_eq!(distinct.len(), 1, "one id, version 1 everywhere: {results:?}");
    let listed = app.get(&format!("/schemas/ids/{}/subjects", results[0].0)).await.body;
    assert_eq!(listed.as_array().map(Vec::len), Some(TASKS));
}
