use crate::helpers::{record, spawn_app, subject, Db};
use crate::on_both_databases;

on_both_databases!(health_and_metrics);

async fn health_and_metrics(db: Db) {
    let app = spawn_app(db).await;
    assert_eq!(app.get("/health/live").await.status, 200);
    let ready = app.get("/health/ready").await;
    assert_eq!((ready.status, ready.body["status"].as_str()), (200, Some("ready")));

    let s = subject("metrics");
    app.register(&s, &record("M", &[])).await;
    app.register(&s, &record("M", &[])).await;
    app.get(&format!("/subjects/{s}/versions/99")).await;
    let text = app.get("/metrics").await.text;
    for expected in [
        r#"eventline_registry_requests_total{route="/subjects/{subject}/versions",status_class="2xx"} 2"#,
        r#"eventline_registry_requests_total{route="/subjects/{subject}/versions/{version}",status_class="4xx"} 1"#,
        r#"eventline_registry_request_duration_seconds_count{route="/subjects/{subject}/versions"} 2"#,
        r#"eventline_registry_registrations_total{outcome="created"} 1"#,
        r#"eventline_registry_registrations_total{outcome="existing"} 1"#,
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
    assert!(!text.contains(&s), "no subject names in labels");
}
