//! A retried request returns the original result and publishes nothing new; concurrent
//! duplicates publish once; the records live in the database and expire.

use std::time::Duration;

use eventline_common::db::{Database, DatabaseSettings};
use eventline_http_ingest::idempotency::{Claim, Completion, IdempotencyStore};
use serde_json::{json, Value};

use crate::helpers::{order_event, order_id, send, spawn_app, Db, DbGuard, TestApp};
use crate::on_both_databases;

on_both_databases!(
    a_retried_event_id_returns_the_original_result_and_publishes_nothing,
    an_idempotency_key_replays_the_whole_answer,
    concurrent_duplicates_publish_once,
    duplicates_inside_one_batch_publish_once,
    records_expire_abandoned_claims_are_taken_over_and_purged,
);

fn with_id(event: &Value) -> (Value, String) {
    let id = uuid::Uuid::new_v4().to_string();
    let mut event = event.clone();
    event["id"] = json!(id);
    (event, id)
}

async fn a_retried_event_id_returns_the_original_result_and_publishes_nothing(db: Db) {
    let app = spawn_app(db).await;
    let (event, id) = with_id(&order_event(&order_id()).0);
    let first = app.publish(&event).await;
    assert_eq!(first.status, 201, "{first:#?}");
    assert_eq!(first.body["id"], id.as_str());
    assert_eq!(first.header("idempotent-replayed"), None);

    // The same event again, its attributes in another order: the original answer.
    let reordered: Value = serde_json::from_str(&format!(
        r#"{{"data": {}, "id": "{id}", "source": "/tests/checkout", "type": "OrderPlaced"}}"#,
        event["data"]
    ))
    .unwrap();
    let again = app.publish(&reordered).await;
    assert_eq!(again.status, 201, "{again:#?}");
    assert_eq!(again.body, first.body);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    // In a batch, too.
    let in_batch = app.publish_batch(std::slice::from_ref(&event)).await;
    assert_eq!(in_batch.body["results"][0]["offset"], first.body["offset"], "{in_batch:#?}");
    assert_eq!(in_batch.body["results"][0]["replayed"], true);

    let mut changed = event.clone();
    changed["data"]["total_minor"] = json!(1);
    let conflict = app.publish(&changed).await;
    let detail = conflict.assert_problem(422, "event-id-conflict");
    assert!(detail.contains(&id), "{detail}");
    assert_eq!(app.messages("orders").await, 1);
}

async fn an_idempotency_key_replays_the_whole_answer(db: Db) {
    let app = spawn_app(db).await;
    let events: Vec<Value> = (0..3).map(|_| order_event(&order_id()).0).collect();
    let key = eventline_testkit::unique("key");
    let post = |app: &TestApp, body: &Vec<Value>| {
        send(app.post("/v1/events:batch").header("idempotency-key", key.clone()).json(body))
    };
    let first = post(&app, &events).await;
    assert_eq!(first.status, 200, "{first:#?}");
    let again = post(&app, &events).await;
    assert_eq!((again.status, &again.body), (200, &first.body));
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(app.messages("orders").await, 3);

    let mut other = events.clone();
    other.pop();
    let reused = post(&app, &other).await;
    assert!(reused.assert_problem(422, "idempotency-key-reused").contains("different request"));
    let on_other_route = send(app.post("/v1/events").header("idempotency-key", key.clone()).json(&events[0])).await;
    on_other_route.assert_problem(422, "idempotency-key-reused");
    // A final failure is remembered as well: the same malformed body gets the same answer.
    let bad_key = eventline_testkit::unique("key");
    for _ in 0..2 {
        let reply = send(app.post("/v1/events").header("idempotency-key", bad_key.clone()).body("{oops")).await;
        reply.assert_problem(400, "malformed-json");
    }
    assert_eq!(app.messages("orders").await, 3);
}

async fn concurrent_duplicates_publish_once(db: Db) {
    let app = spawn_app(db).await;
    // Ten copies of one event with an id, and ten of one request with a key, all at once.
    let (event, _) = with_id(&order_event(&order_id()).0);
    let (keyed, _) = order_event(&order_id());
    let key = eventline_testkit::unique("key");
    let by_id = (0..10).map(|_| app.publish(&event));
    let by_key = (0..10).map(|_| send(app.post("/v1/events").header("idempotency-key", key.clone()).json(&keyed)));
    let (by_id, by_key) = tokio::join!(futures::future::join_all(by_id), futures::future::join_all(by_key));
    for replies in [by_id, by_key] {
        let published: Vec<&Value> = replies.iter().filter(|r| r.status == 201).map(|r| &r.body).collect();
        assert!(!published.is_empty(), "{replies:#?}");
        assert!(published.iter().all(|body| *body == published[0]), "every success is the same result: {replies:#?}");
        for reply in replies.iter().filter(|r| r.status != 201) {
            let slug = if reply.body["type"] == "urn:eventline:problem:event-in-progress" {
                "event-in-progress"
            } else {
                "request-in-progress"
            };
            reply.assert_problem(409, slug);
            assert!(reply.header("retry-after").is_some());
        }
    }
    assert_eq!(app.messages("orders").await, 2);
}

async fn duplicates_inside_one_batch_publish_once(db: Db) {
    let app = spawn_app(db).await;
    let (event, id) = with_id(&order_event(&order_id()).0);
    let mut different = event.clone();
    different["data"]["currency"] = json!("USD");
    let reply = app.publish_batch(&[event.clone(), event, different]).await;
    assert_eq!(reply.status, 207, "{reply:#?}");
    let results = reply.body["results"].as_array().unwrap();
    assert_eq!((results[0]["status"].as_u64(), results[1]["status"].as_u64()), (Some(201), Some(201)));
    assert_eq!(results[1]["offset"], results[0]["offset"]);
    assert_eq!(results[1]["replayed"], true);
    assert_eq!(results[2]["status"], 422);
    assert_eq!(results[2]["problem"], "urn:eventline:problem:event-id-conflict");
    assert_eq!(results[0]["id"], id.as_str());
    assert_eq!(app.messages("orders").await, 1);
}

async fn records_expire_abandoned_claims_are_taken_over_and_purged(db: Db) {
    let (_guard, url) = DbGuard::create(db).await;
    let database = Database::connect(&DatabaseSettings { url, ..DatabaseSettings::default() }).await.unwrap();
    let window = Duration::from_secs(3600);
    let stale = Duration::from_secs(60);
    let store = IdempotencyStore::new(database, window, stale);
    store.migrate().await.unwrap();
    let now = eventline_http_ingest::idempotency::now_ms();
    let key = |k: &str, fp: &str| vec![(k.to_owned(), fp.to_owned())];

    assert_eq!(store.claim_at("s", "c1", &key("done", "fp"), now).await.unwrap(), [Claim::Claimed]);
    let done = Completion { key: "done".into(), status: 201, response: "{\"x\":1}".into() };
    store.complete("s", "c1", &[done]).await.unwrap();
    let completed = Claim::Completed { same_fingerprint: true, status: 201, response: "{\"x\":1}".into() };
    assert_eq!(store.claim_at("s", "c2", &key("done", "fp"), now).await.unwrap(), [completed]);
    assert!(matches!(
        &store.claim_at("s", "c2", &key("done", "other"), now).await.unwrap()[0],
        Claim::Completed { same_fingerprint: false, .. }
    ));
    assert_eq!(
        store.claim_at("other-scope", "c2", &key("done", "fp"), now).await.unwrap(),
        [Claim::Claimed],
        "scopes are apart"
    );
    let after_window = now + 2 * window.as_millis() as i64;
    assert_eq!(
        store.claim_at("s", "c3", &key("done", "fp"), after_window).await.unwrap(),
        [Claim::Claimed],
        "expired: usable again"
    );

    assert_eq!(store.claim_at("s", "c1", &key("running", "fp"), now).await.unwrap(), [Claim::Claimed]);
    assert_eq!(store.claim_at("s", "c2", &key("running", "fp"), now + 1000).await.unwrap(), [Claim::InFlight]);
    let abandoned = now + stale.as_millis() as i64 + 1;
    assert_eq!(store.claim_at("s", "c2", &key("running", "fp"), abandoned).await.unwrap(), [Claim::Claimed]);
    store.release("s", "c2", &["running".to_owned()]).await.unwrap();
    assert_eq!(
        store.claim_at("s", "c4", &key("running", "fp"), now).await.unwrap(),
        [Claim::Claimed],
        "released: free again"
    );

    // Purging deletes exactly what expired.
    assert_eq!(store.purge_expired_at(now).await.unwrap(), 0);
    assert_eq!(store.purge_expired_at(after_window + 3 * window.as_millis() as i64).await.unwrap(), 3);
}
