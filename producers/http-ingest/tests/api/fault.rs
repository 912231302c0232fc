//! The broker stops while batches are being published: callers get 503 with `Retry-After`
//! within the bounded wait, nothing acknowledged is lost, and publishing resumes when the broker
//! is back; retrying the refused batches publishes what was missing, and only that.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::message::Message as _;
use serde_json::{json, Value};

use crate::helpers::{header, order_event, order_id, send, spawn_app_with, Db, Reply};

const BROKER_WAIT: Duration = Duration::from_secs(3);
const BATCH: usize = 20;

struct Sent {
    events: Vec<Value>,
    reply: Reply,
    took: Duration,
}

fn batch() -> Vec<Value> {
    (0..BATCH)
        .map(|_| {
            let (mut event, _) = order_event(&order_id());
            event["id"] = json!(uuid::Uuid::new_v4().to_string());
            event
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_stopping_mid_batch_gets_503_in_bounded_time_and_loses_nothing_acknowledged() {
    let mut app = spawn_app_with(Db::Sqlite, |s| s.broker_wait = BROKER_WAIT).await;
    let log: Arc<Mutex<Vec<Sent>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (http, url, log, stop) =
            (app.http.clone(), format!("{}/v1/events:batch", app.base), log.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let events = batch();
                let started = Instant::now();
                let reply = send(http.post(&url).json(&events)).await;
                log.lock().unwrap().push(Sent { events, reply, took: started.elapsed() });
            }
        })
    };
    let count = |pred: fn(&Sent) -> bool| log.lock().unwrap().iter().filter(|s| pred(s)).count();
    eventually("two batches published", || count(|s| s.reply.status == 200) >= 2).await;
    app.broker.stop().await;
    eventually("a 503 while the broker is down", || count(|s| s.reply.status == 503) >= 1).await;
    app.broker.resume().await;
    let refused = count(|s| s.reply.status == 503);
    eventually("publishing to resume", || {
        let log = log.lock().unwrap();
        let first_refusal = log.iter().position(|s| s.reply.status == 503).unwrap_or(usize::MAX);
        log.iter().skip(first_refusal).filter(|s| s.reply.status == 200).count() >= 2
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    sender.await.unwrap();
    let log = Arc::try_unwrap(log).ok().unwrap().into_inner().unwrap();
    assert!(refused >= 1);

    // Every answer: 200, or (while the broker was away) 207/503 saying which events landed.
    let mut acknowledged: HashMap<String, (i64, i64)> = HashMap::new();
    let mut to_retry = Vec::new();
    for sent in &log {
        let reply = &sent.reply;
        assert!(matches!(reply.status, 200 | 207 | 503), "{reply:#?}");
        if reply.status == 503 {
            reply.assert_problem(503, "broker-unavailable");
            assert!(reply.header("retry-after").is_some_and(|s| s.parse::<u64>().is_ok()), "{reply:#?}");
            assert!(sent.took < BROKER_WAIT + Duration::from_secs(5), "a bounded wait, not {:?}", sent.took);
        }
        for result in reply.body["results"].as_array().expect("per-event results") {
            if result["status"] == 201 {
                let position = (result["partition"].as_i64().unwrap(), result["offset"].as_i64().unwrap());
                acknowledged.insert(result["id"].as_str().unwrap().to_owned(), position);
            } else {
                assert_eq!(result["status"], 503, "{result}");
            }
        }
        if reply.status != 200 {
            to_retry.push(sent.events.clone());
        }
    }

    // Retrying the refused batches publishes what was missing; acknowledged events are replayed.
    for events in &to_retry {
        let reply = app.publish_batch(events).await;
        assert_eq!(reply.status, 200, "{reply:#?}");
        for result in reply.body["results"].as_array().unwrap() {
            let id = result["id"].as_str().unwrap().to_owned();
            if let Some(position) = acknowledged.get(&id) {
                assert_eq!(result["replayed"], true, "{result}");
                assert_eq!((result["partition"].as_i64().unwrap(), result["offset"].as_i64().unwrap()), *position);
            }
        }
    }

    let total = app.messages("orders").await;
    let messages = app.consume("orders", usize::try_from(total).unwrap()).await;
    let mut on_topic: HashMap<String, Vec<(i64, i64)>> = HashMap::new();
    for message in &messages {
        let id = header(message, "ce_id").expect("ce_id");
        on_topic.entry(id).or_default().push((i64::from(message.partition()), message.offset()));
    }
    for (id, position) in &acknowledged {
        assert_eq!(
            on_topic.get(id),
            Some(&vec![*position]),
            "acknowledged event {id} is on the topic once, where answered"
        );
    }
    for sent in &log {
        for event in &sent.events {
            let id = event["id"].as_str().unwrap();
            assert!(on_topic.contains_key(id), "every event sent is on the topic after the retries: {id}");
        }
    }
}

async fn eventually(what: &str, check: impl Fn() -> bool) {
    eventline_testkit::eventually(what, Duration::from_secs(60), || {
        let done = check();
        async move { done.then_some(()) }
    })
    .await;
}
