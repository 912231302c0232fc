//! The effect ledger and its worker on PostgreSQL and SQLite: an effect is recorded once per
//! key whatever the copies of its event, taken by one worker at a time, done once, tried again on
//! its schedule (or when the recipient says), failed for good with the reason, and taken again
//! when a worker died holding it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventline_common::db::{Database, DatabaseSettings};
use eventline_common::effects::{
    Effect, EffectKey, EffectLedger, EffectState, EffectWorker, EffectWorkerSettings, Perform, Recorded, RetrySchedule,
    Tried,
};
use eventline_testkit::{eventually, PgDatabase, SqliteDatabase};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(20);

async fn ledger(url: &str, service: &str) -> EffectLedger {
    let db = Database::connect(&DatabaseSettings { url: url.to_owned(), ..DatabaseSettings::default() }).await.unwrap();
    let ledger = EffectLedger::new(db, service);
    ledger.migrate().await.unwrap();
    ledger
}

async fn an_effect_is_recorded_once_and_taken_by_one_worker(url: &str) {
    let ledger = ledger(url, "notifier").await;
    let other_service = EffectLedger::new(ledger.database().clone(), "reporter");
    let key = EffectKey::new(Uuid::new_v4(), "email.order_confirmation", "ada@example.com");

    // Recorded in the consuming transaction: rolled back, it is not there.
    let mut tx = ledger.database().pool().begin().await.unwrap();
    assert_eq!(ledger.record(&mut tx, &key, &serde_json::json!({"n": 1})).await.unwrap(), Recorded::New);
    tx.rollback().await.unwrap();
    assert_eq!(ledger.get(&key).await.unwrap(), None);

    let mut tx = ledger.database().pool().begin().await.unwrap();
    assert_eq!(ledger.record(&mut tx, &key, &serde_json::json!({"n": 1})).await.unwrap(), Recorded::New);
    tx.commit().await.unwrap();
    // Every later copy of the event finds it, whatever payload it would have made.
    assert_eq!(ledger.record_now(&key, &serde_json::json!({"n": 2})).await.unwrap(), Recorded::AlreadyRecorded);
    assert_eq!(other_service.record_now(&key, &"x").await.unwrap(), Recorded::New, "ledgers are per service");

    let now = chrono::Utc::now().timestamp_millis();
    let taken = ledger.take_due(now, Duration::from_secs(60), 10).await.unwrap();
    assert_eq!(taken.len(), 1);
    let effect = &taken[0];
    assert_eq!((effect.effect_id, effect.attempts, effect.state), (key.effect_id(), 1, EffectState::Due));
    assert_eq!(effect.payload, serde_json::json!({"n": 1}), "the payload is the first recording's");
    assert!(
        ledger.take_due(now, Duration::from_secs(60), 10).await.unwrap().is_empty(),
        "leased: nobody else takes it"
    );

    // A worker that died holding it: once the lease has run out, it is taken again, same id.
    let later = now + 61_000;
    let again = ledger.take_due(later, Duration::from_secs(60), 10).await.unwrap();
    assert_eq!(again.iter().map(|e| (e.effect_id, e.attempts)).collect::<Vec<_>>(), [(key.effect_id(), 2)]);

    ledger.done(key.effect_id()).await.unwrap();
    assert!(ledger.take_due(later + 3_600_000, Duration::from_secs(60), 10).await.unwrap().is_empty(), "done is done");
    assert_eq!(ledger.record_now(&key, &"again").await.unwrap(), Recorded::AlreadyRecorded);
    assert_eq!(ledger.get(&key).await.unwrap().unwrap().state, EffectState::Done);
    assert_eq!(ledger.counts().await.unwrap(), BTreeMap::from([(EffectState::Done, 1)]));
}

#[tokio::test]
async fn an_effect_is_recorded_once_and_taken_by_one_worker_on_sqlite() {
    let db = SqliteDatabase::create();
    an_effect_is_recorded_once_and_taken_by_one_worker(db.url()).await;
}

#[tokio::test]
async fn an_effect_is_recorded_once_and_taken_by_one_worker_on_postgres() {
    let db = PgDatabase::create().await;
    an_effect_is_recorded_once_and_taken_by_one_worker(db.url()).await;
}

/// A recipient that answers from a script per recipient and remembers every try.
#[derive(Clone, Default)]
struct Scripted {
    answers: Arc<Mutex<BTreeMap<String, Vec<Tried>>>>,
    tries: Arc<Mutex<Vec<(Uuid, String)>>>,
}

impl Perform for Scripted {
    async fn perform(&self, effect: &Effect) -> Tried {
        self.tries.lock().unwrap().push((effect.effect_id, effect.key.recipient.clone()));
        let mut answers = self.answers.lock().unwrap();
        let script = answers.entry(effect.key.recipient.clone()).or_default();
        if script.is_empty() {
            Tried::Done
        } else {
            script.remove(0)
        }
    }
}

async fn the_worker_performs_retries_and_fails_by_the_schedule(url: &str) {
    let ledger = ledger(url, "notifier").await;
    let recipient = Scripted::default();
    recipient.answers.lock().unwrap().extend([
        ("flaky".to_owned(), vec![Tried::again("503"), Tried::again("timeout")]),
        ("gone".to_owned(), vec![Tried::Failed { error: "410 Gone".into() }]),
        ("down".to_owned(), vec![Tried::again("refused"); 10]),
        ("slow-down".to_owned(), vec![Tried::Again { error: "429".into(), after: Some(Duration::from_millis(50)) }]),
    ]);
    let settings = EffectWorkerSettings {
        poll_interval: Duration::from_millis(20),
        schedule: RetrySchedule { delays: vec![Duration::from_millis(30), Duration::from_millis(30)], jitter: 0.0 },
        ..EffectWorkerSettings::default()
    };
    let registry = prometheus::Registry::new();
    let worker =
        Arc::new(EffectWorker::new(ledger.clone(), "notifier", recipient.clone(), settings, &registry).unwrap());
    let event = Uuid::new_v4();
    for to in ["ok", "flaky", "gone", "down", "slow-down"] {
        ledger.record_now(&EffectKey::new(event, "webhook", to), &to).await.unwrap();
    }
    let token = CancellationToken::new();
    let running = tokio::spawn(worker.clone().run(token.clone()));
    worker.waker().notify_one();
    eventually("every effect to settle", WAIT, || async {
        let counts = ledger.counts().await.unwrap();
        (!counts.contains_key(&EffectState::Due)).then_some(counts)
    })
    .await;
    token.cancel();
    running.await.unwrap().unwrap();

    let state = |to: &str| {
        let ledger = ledger.clone();
        let key = EffectKey::new(event, "webhook", to);
        async move { ledger.get(&key).await.unwrap().unwrap() }
    };
    assert_eq!((state("ok").await.state, state("ok").await.attempts), (EffectState::Done, 1));
    assert_eq!((state("flaky").await.state, state("flaky").await.attempts), (EffectState::Done, 3));
    assert_eq!(state("slow-down").await.state, EffectState::Done);
    let gone = state("gone").await;
    assert_eq!((gone.state, gone.attempts, gone.last_error.as_deref()), (EffectState::Failed, 1, Some("410 Gone")));
    let down = state("down").await;
    assert_eq!((down.state, down.attempts), (EffectState::Failed, 3), "one try and two retries, then failed");
    assert_eq!(down.last_error.as_deref(), Some("refused"));
    let tries = recipient.tries.lock().unwrap().clone();
    for (id, to) in &tries {
        assert_eq!(*id, EffectKey::new(event, "webhook", to.as_str()).effect_id(), "every try carries the effect's id");
    }
    assert_eq!(tries.len(), 1 + 3 + 1 + 3 + 2);
    let text =
        String::from_utf8(prometheus::TextEncoder::new().encode_to_string(&registry.gather()).unwrap().into_bytes())
            .unwrap();
    assert!(text.contains("eventline_effects_total{outcome=\"failed\",service=\"notifier\"} 2"), "{text}");

    // An operator redrives a failed one: due again, with a fresh schedule, and it goes out.
    assert!(ledger.redrive(down.effect_id).await.unwrap());
    assert!(!ledger.redrive(state("ok").await.effect_id).await.unwrap(), "only failed effects are redriven");
    recipient.answers.lock().unwrap().clear();
    let token = CancellationToken::new();
    let running = tokio::spawn(worker.clone().run(token.clone()));
    eventually("the redriven effect to be done", WAIT, || async {
        (state("down").await.state == EffectState::Done).then_some(())
    })
    .await;
    token.cancel();
    running.await.unwrap().unwrap();
}

#[tokio::test]
async fn the_worker_performs_retries_and_fails_by_the_schedule_on_sqlite() {
    let db = SqliteDatabase::create();
    the_worker_performs_retries_and_fails_by_the_schedule(db.url()).await;
}

#[tokio::test]
async fn the_worker_performs_retries_and_fails_by_the_schedule_on_postgres() {
    let db = PgDatabase::create().await;
    the_worker_performs_retries_and_fails_by_the_schedule(db.url()).await;
}
