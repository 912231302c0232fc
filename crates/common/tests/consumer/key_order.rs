//! `key_order = "key"`: two keys on one partition. While an event of k1 is retrying or
//! dead-lettered, k1's later events are parked (in the offset store's database) and k2's flow;
//! k1's parked events are handed over in order once it succeeds, or once its dead letter is
//! redriven through the retry topic and succeeds, also after a restart. PostgreSQL and SQLite.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use eventline_common::db::{Database, DatabaseSettings};
use eventline_common::kafka::consumer::dead_letter::header as dlq_header;
use eventline_common::kafka::consumer::metrics::PARKED_EVENTS;
use eventline_common::kafka::consumer::{
    Batch, ConsumerMetrics, ConsumerSettings, DeadLetterInfo, DeadLetterReason, Handler, HandlerError, KeyOrder,
    OffsetMode, OffsetStore, RetryPolicy,
};
use eventline_common::kafka::Position;
use eventline_testkit::{eventually, PgDatabase, SqliteDatabase};
use rdkafka::message::{Header, Headers as _, Message, OwnedHeaders};
use sqlx::Row as _;

use crate::support::{metric, read_all, settings, shared, Env, Running, Shared, WAIT};

/// One handled event, as the handler's table has it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Applied {
    key: String,
    topic: String,
    offset: i64,
    released: bool,
}

/// Applies events as rows with the batch's positions in one transaction. By CloudEvents subject:
/// `flaky` fails retryably (naming itself) in its first `flaky_calls` calls; `poison` fails
/// permanently until `accept_poison` is set. Records every call's offsets.
struct Keyed {
    db: Database,
    flaky_calls: u32,
    flaky_seen: Shared<u32>,
    accept_poison: Arc<AtomicBool>,
    calls: Shared<Vec<Vec<(String, i64)>>>,
    /// How long a released batch takes (to stop the consumer in the middle of releasing).
    released_delay: Duration,
}

impl Handler for Keyed {
    async fn handle(&self, batch: &Batch) -> Result<(), HandlerError> {
        self.calls.lock().unwrap().push(batch.iter().map(|e| (e.key.clone().unwrap_or_default(), e.offset)).collect());
        if batch.is_released() {
            tokio::time::sleep(self.released_delay).await;
        }
        for event in batch {
            match event.envelope.subject.as_deref() {
                Some("flaky") => {
                    let mut seen = self.flaky_seen.lock().unwrap();
                    *seen += 1;
                    if *seen <= self.flaky_calls {
                        return Err(HandlerError::retryable_at(event.offset, anyhow::anyhow!("flaky dependency")));
                    }
                }
                Some("poison") if !self.accept_poison.load(Ordering::SeqCst) => {
                    return Err(HandlerError::permanent_at(event.offset, anyhow::anyhow!("cannot apply this yet")))
                }
                _ => {}
            }
        }
        let mut tx = self.db.pool().begin().await.map_err(HandlerError::retryable)?;
        for event in batch {
            sqlx::query(
                "INSERT INTO keyed_rows (seq, record_key, topic, record_offset, released) \
                 VALUES ((SELECT COUNT(*) FROM keyed_rows), $1, $2, $3, $4)",
            )
            .bind(event.key.clone().unwrap_or_default())
            .bind(event.topic.to_string())
            .bind(event.offset)
            .bind(i64::from(batch.is_released()))
            .execute(&mut *tx)
            .await
            .map_err(HandlerError::retryable)?;
        }
        OffsetStore::save(&mut tx, batch.group(), batch.positions()).await.map_err(HandlerError::retryable)?;
        tx.commit().await.map_err(HandlerError::retryable)
    }
}

async fn applied(db: &Database) -> Vec<Applied> {
    let rows = sqlx::query("SELECT record_key, topic, record_offset, released FROM keyed_rows ORDER BY seq")
        .fetch_all(db.pool())
        .await
        .unwrap();
    rows.iter()
        .map(|r| Applied { key: r.get(0), topic: r.get(1), offset: r.get(2), released: r.get::<i64, _>(3) == 1 })
        .collect()
}

async fn parked_rows(db: &Database, group: &str) -> Vec<(String, i64, String)> {
    let rows = sqlx::query(
        "SELECT record_key, record_offset, state FROM eventline_parked WHERE group_id = $1 ORDER BY record_offset",
    )
    .bind(group)
    .fetch_all(db.pool())
    .await
    .unwrap();
    rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect()
}

fn offsets_of(rows: &[Applied], key: &str) -> Vec<i64> {
    rows.iter().filter(|r| r.key == key).map(|r| r.offset).collect()
}

async fn setup(url: &str) -> (Env, Database, OffsetStore) {
    let env = Env::start().await;
    let db = Database::connect(&DatabaseSettings { url: url.to_owned(), ..DatabaseSettings::default() }).await.unwrap();
    let store = OffsetStore::new(db.clone());
    store.migrate().await.unwrap();
    sqlx::query(
        "CREATE TABLE keyed_rows (seq BIGINT NOT NULL, record_key TEXT NOT NULL, topic TEXT NOT NULL, \
         record_offset BIGINT NOT NULL, released BIGINT NOT NULL)",
    )
    .execute(db.pool())
    .await
    .unwrap();
    (env, db, store)
}

fn keyed_settings(topic: &str) -> ConsumerSettings {
    let mut settings = settings(&[topic]);
    settings.offset_mode = OffsetMode::Transactional;
    settings.key_order = KeyOrder::Key;
    settings.batch_max_size = 10;
    settings.batch_linger = Duration::from_millis(50);
    settings.retry.max_attempts = 2;
    settings.parked_retry = RetryPolicy {
        max_attempts: 20,
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(200),
        jitter: 0.2,
    };
    settings
}

async fn a_retrying_event_holds_up_only_its_key(url: &str) {
    let (env, db, store) = setup(url).await;
    let topic = env.topic(1).await;
    let a = env.order_with(&topic, 0, "k1", Some("flaky"), None).await;
    let mut k2 = vec![env.order(&topic, 0, "k2").await];
    let b = env.order(&topic, 0, "k1").await;
    k2.push(env.order(&topic, 0, "k2").await);
    let c = env.order(&topic, 0, "k1").await;
    k2.push(env.order(&topic, 0, "k2").await);

    let settings = keyed_settings(&topic);
    let group = settings.group_id.clone();
    let registry = prometheus::Registry::new();
    let metrics = ConsumerMetrics::registered_in(&registry).unwrap();
    let calls = shared::<Vec<Vec<(String, i64)>>>();
    let handler = Keyed {
        db: db.clone(),
        flaky_calls: 5,
        flaky_seen: shared(),
        accept_poison: Arc::default(),
        calls: calls.clone(),
        released_delay: Duration::ZERO,
    };
    let running = Running::start(env.runtime(settings, handler, &metrics).with_offset_store(store.clone()));
    eventually("every event applied", WAIT, || async { (applied(&db).await.len() >= 6).then_some(()) }).await;
    eventually("nothing parked any more", WAIT, || async { parked_rows(&db, &group).await.is_empty().then_some(()) })
        .await;
    running.stop().await;

    let rows = applied(&db).await;
    assert_eq!(rows.len(), 6, "each event once: {rows:?}");
    assert_eq!(offsets_of(&rows, "k1"), [a, b, c], "k1 in order");
    assert_eq!(offsets_of(&rows, "k2"), k2, "k2 in order");
    let position = |offset: i64| rows.iter().position(|r| r.offset == offset).unwrap();
    assert!(k2.iter().all(|o| position(*o) < position(a)), "k2 flowed while k1 was retrying: {rows:?}");
    assert!(rows.iter().filter(|r| r.key == "k1").all(|r| r.released), "k1 came back from the parked store");
    let calls = calls.lock().unwrap().clone();
    for call in &calls {
        let has = |offset: i64| call.iter().any(|(_, o)| *o == offset);
        if has(b) || has(c) {
            assert!(has(a), "k1's later events reached the handler without it: {calls:?}");
        }
    }
    assert!(calls.iter().filter(|call| call.iter().any(|(_, o)| *o == a)).count() >= 6, "retried until it succeeded");
    let stored = store.load(&group, &topic, &[0]).await.unwrap();
    assert_eq!(stored.get(&0), Some(&(k2[2] + 1)), "the partition moved past every event");
    assert_eq!(metric(&registry, PARKED_EVENTS, &[("group", &group)]), 0.0);
}

async fn a_dead_lettered_event_parks_its_key_until_it_is_redriven(url: &str) {
    let (env, db, store) = setup(url).await;
    let topic = env.topic(1).await;
    let a = env.order_with(&topic, 0, "k1", Some("poison"), None).await;
    let mut k2 = vec![env.order(&topic, 0, "k2").await];
    let b = env.order(&topic, 0, "k1").await;
    k2.push(env.order(&topic, 0, "k2").await);
    let c = env.order(&topic, 0, "k1").await;

    let settings = keyed_settings(&topic);
    let group = settings.group_id.clone();
    let (dead_letter_topic, retry_topic) = (settings.dead_letter_topic(), settings.retry_topic());
    let registry = prometheus::Registry::new();
    let metrics = ConsumerMetrics::registered_in(&registry).unwrap();
    let accept = Arc::new(AtomicBool::new(false));
    let handler = |calls: &Shared<Vec<Vec<(String, i64)>>>| Keyed {
        db: db.clone(),
        flaky_calls: 0,
        flaky_seen: shared(),
        accept_poison: accept.clone(),
        calls: calls.clone(),
        released_delay: Duration::ZERO,
    };
    let calls = shared();
    let running =
        Running::start(env.runtime(settings.clone(), handler(&calls), &metrics).with_offset_store(store.clone()));
    eventually("k2 applied and k1 parked", WAIT, || async {
        (applied(&db).await.len() >= 2 && parked_rows(&db, &group).await.len() >= 3).then_some(())
    })
    .await;
    let dead = read_all(&env.kafka(), &dead_letter_topic, 1).await;
    let info = DeadLetterInfo::from_headers(dead[0].headers().unwrap()).unwrap();
    assert_eq!((info.original_offset, info.reason), (a, DeadLetterReason::Permanent));
    eventually("the parked gauge", WAIT, || async {
        (metric(&registry, PARKED_EVENTS, &[("group", &group)]) == 3.0).then_some(())
    })
    .await;
    running.stop().await;
    assert_eq!(
        parked_rows(&db, &group).await,
        [("k1".to_owned(), a, "dead".to_owned()), ("k1".into(), b, "parked".into()), ("k1".into(), c, "parked".into())]
    );
    let rows = applied(&db).await;
    assert_eq!(offsets_of(&rows, "k2"), k2, "k2 flowed");
    assert!(offsets_of(&rows, "k1").is_empty(), "k1's later events were not handled: {rows:?}");
    let at = |offset: i64| Position { topic: topic.clone(), partition: 0, offset };
    assert!(store.has_passed(&group, &at(k2[1])).await.unwrap());
    assert!(!store.has_passed(&group, &at(b)).await.unwrap(), "a parked event is not applied yet");
    assert_eq!(metric(&registry, PARKED_EVENTS, &[("group", &group)]), 0.0, "a stopped consumer parks nothing");

    // A new instance loads the blocked key: k1's next event is parked too, k2's is handled.
    let d = env.order(&topic, 0, "k1").await;
    k2.push(env.order(&topic, 0, "k2").await);
    let calls = shared();
    let running = Running::start(env.runtime(settings, handler(&calls), &metrics).with_offset_store(store.clone()));
    eventually("k2's new event applied, k1's parked", WAIT, || async {
        (applied(&db).await.len() >= 3 && parked_rows(&db, &group).await.len() >= 4).then_some(())
    })
    .await;
    assert!(offsets_of(&applied(&db).await, "k1").is_empty());

    // The dead letter is fixed and redriven to the group's retry topic, as `eventline dlq
    // redrive` does: key, value and headers without the dead-letter ones.
    accept.store(true, Ordering::SeqCst);
    let letter = &dead[0];
    let headers = letter
        .headers()
        .unwrap()
        .iter()
        .filter(|h| !h.key.starts_with(dlq_header::PREFIX))
        .fold(OwnedHeaders::new(), |headers, h| headers.insert(Header { key: h.key, value: h.value }))
        .insert(Header { key: dlq_header::REDRIVEN_FROM, value: Some(format!("{dead_letter_topic}:0:0").as_str()) });
    let key = std::str::from_utf8(letter.key().unwrap()).unwrap();
    env.raw(&retry_topic, 0, Some(key), letter.payload().unwrap(), Some(headers), None).await;

    eventually("k1 released", WAIT, || async { (applied(&db).await.len() >= 7).then_some(()) }).await;
    eventually("nothing parked any more", WAIT, || async { parked_rows(&db, &group).await.is_empty().then_some(()) })
        .await;
    running.stop().await;

    let rows = applied(&db).await;
    assert_eq!(rows.len(), 7, "each event once: {rows:?}");
    let k1: Vec<(String, i64)> = rows.iter().filter(|r| r.key == "k1").map(|r| (r.topic.clone(), r.offset)).collect();
    assert_eq!(
        k1,
        [(retry_topic.clone(), 0), (topic.clone(), b), (topic.clone(), c), (topic.clone(), d)],
        "the redriven event first, then k1's parked events in order"
    );
    assert_eq!(offsets_of(&rows, "k2"), k2);
    assert!(store.has_passed(&group, &at(b)).await.unwrap(), "applied once released");
    let stored = store.load(&group, &topic, &[0]).await.unwrap();
    assert_eq!(stored.get(&0), Some(&(k2[2] + 1)));
    assert_eq!(metric(&registry, PARKED_EVENTS, &[("group", &group)]), 0.0);
    let by_key: BTreeMap<String, usize> = rows.iter().fold(BTreeMap::new(), |mut counts, r| {
        *counts.entry(r.key.clone()).or_default() += 1;
        counts
    });
    assert_eq!(by_key, BTreeMap::from([("k1".to_owned(), 4), ("k2".to_owned(), 3)]));
}

/// Stopped while k1's parked events are being released, and started again: each event is
/// applied once, in order.
async fn a_stop_while_releasing_loses_and_repeats_nothing(url: &str) {
    let (env, db, store) = setup(url).await;
    let topic = env.topic(1).await;
    let mut k1 = vec![env.order_with(&topic, 0, "k1", Some("flaky"), None).await];
    let mut k2 = Vec::new();
    for _ in 0..15 {
        k1.push(env.order(&topic, 0, "k1").await);
        k2.push(env.order(&topic, 0, "k2").await);
    }
    let mut settings = keyed_settings(&topic);
    settings.batch_max_size = 3;
    let group = settings.group_id.clone();
    let metrics = ConsumerMetrics::registered_in(&prometheus::Registry::new()).unwrap();
    let handler = || Keyed {
        db: db.clone(),
        flaky_calls: 2,
        flaky_seen: shared(),
        accept_poison: Arc::default(),
        calls: shared(),
        released_delay: Duration::from_millis(150),
    };
    let running = Running::start(env.runtime(settings.clone(), handler(), &metrics).with_offset_store(store.clone()));
    eventually("some of k1 released", WAIT, || async {
        (offsets_of(&applied(&db).await, "k1").len() >= 3).then_some(())
    })
    .await;
    running.stop().await;
    let before = offsets_of(&applied(&db).await, "k1").len();
    assert!(before < k1.len(), "stopped in the middle of releasing ({before} of {})", k1.len());
    assert!(!parked_rows(&db, &group).await.is_empty());

    let running = Running::start(env.runtime(settings, handler(), &metrics).with_offset_store(store.clone()));
    eventually("every event applied", WAIT, || async { (applied(&db).await.len() >= 31).then_some(()) }).await;
    eventually("nothing parked any more", WAIT, || async { parked_rows(&db, &group).await.is_empty().then_some(()) })
        .await;
    running.stop().await;
    let rows = applied(&db).await;
    assert_eq!(offsets_of(&rows, "k1"), k1, "k1 once each, in order");
    assert_eq!(offsets_of(&rows, "k2"), k2, "k2 once each, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stop_while_releasing_loses_and_repeats_nothing_on_sqlite() {
    let sqlite = SqliteDatabase::create();
    a_stop_while_releasing_loses_and_repeats_nothing(sqlite.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stop_while_releasing_loses_and_repeats_nothing_on_postgres() {
    let pg = PgDatabase::create().await;
    a_stop_while_releasing_loses_and_repeats_nothing(pg.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retrying_event_holds_up_only_its_key_on_sqlite() {
    let sqlite = SqliteDatabase::create();
    a_retrying_event_holds_up_only_its_key(sqlite.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retrying_event_holds_up_only_its_key_on_postgres() {
    let pg = PgDatabase::create().await;
    a_retrying_event_holds_up_only_its_key(pg.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_lettered_event_parks_its_key_until_it_is_redriven_on_sqlite() {
    let sqlite = SqliteDatabase::create();
    a_dead_lettered_event_parks_its_key_until_it_is_redriven(sqlite.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_lettered_event_parks_its_key_until_it_is_redriven_on_postgres() {
    let pg = PgDatabase::create().await;
    a_dead_lettered_event_parks_its_key_until_it_is_redriven(pg.url()).await;
}
