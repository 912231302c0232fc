//! Rebuilding the read model beside the live one: a projector runs and serves while events keep
//! arriving and a client keeps reading; a rebuild builds generation 2, swaps it in, the running
//! projector follows it; the read model equals the fold of all events and the query API never
//! failed nor went back in time; a rollback makes generation 1 active again and it catches up.
//! Also: interrupted, concurrent and dead builds.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventline_common::catalog::Catalog;
use eventline_common::db::Database;
use eventline_common::generations::{
    self as rebuild, group_of, now_ms, GenerationError, GenerationState, RebuildContext, RebuildError, RebuildEvent,
    RebuildOutcome, TransitionError, STALE_AFTER,
};
use eventline_common::kafka::Position;
use eventline_common::service::Rebuildable as _;
use eventline_projector::domain::{ReadModel, Recorded};
use eventline_projector::store::{Store, Tables};
use eventline_projector::{ProjectorService, ProjectorSettings};
use eventline_testkit::eventually;
use proptest::strategy::{Strategy as _, ValueTree as _};
use proptest::test_runner::TestRunner;
use tokio_util::sync::CancellationToken;

use crate::events::{self, placed, recorded, registered};
use crate::support::{settings, Backend, Env, Running, WAIT};

const STALE_MS: i64 = 30_000;

fn context(env: &Env, settings: &ProjectorSettings, db: &Database) -> RebuildContext<ProjectorSettings> {
    RebuildContext {
        settings: settings.clone(),
        db: db.clone(),
        kafka: env.stack.broker.kafka_settings(),
        registry_client: env.stack.registry.client.clone(),
        catalog: Catalog::embedded().unwrap(),
    }
}

/// Everything published so far.
#[derive(Default)]
struct Published {
    events: Vec<Recorded>,
    /// The last position per (topic, partition).
    last: BTreeMap<(String, i32), Position>,
    /// The id prefix of each stream, in order.
    streams: Vec<String>,
}

impl Published {
    fn record(&mut self, prefix: String, events: Vec<Recorded>, positions: Vec<Position>) {
        for position in positions {
            self.last.insert((position.topic.clone(), position.partition), position);
        }
        self.events.extend(events);
        self.streams.push(prefix);
    }

    fn positions(&self) -> Vec<Position> {
        self.last.values().cloned().collect()
    }
}

/// Publishes random streams of up to 30 events (with redeliveries), one every 40 ms, until
/// `stop`; `chunks` counts the streams published.
fn publish_until(
    env: Arc<Env>,
    published: Arc<Mutex<Published>>,
    chunks: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut runner = TestRunner::default();
        while !stop.load(Ordering::SeqCst) {
            let n = chunks.load(Ordering::SeqCst);
            let prefix = format!("live{n}");
            let stream = events::stream(prefix.clone(), 30).new_tree(&mut runner).unwrap().current();
            let positions = env.send_all(&stream).await;
            published.lock().unwrap().record(prefix, stream, positions);
            chunks.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    })
}

/// What the reading client saw.
#[derive(Debug, Default)]
struct Hammered {
    requests: u64,
    found: u64,
    failures: Vec<String>,
}

/// Reads orders, customers and customers' orders of the latest streams (and an older one)
/// until `stop`. A failure: a transport error, any status but 200 and 404, and a 404 for
/// something that was found before (the read model went back in time).
fn hammer(url: String, published: Arc<Mutex<Published>>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Hammered> {
    tokio::spawn(async move {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
        let mut seen: HashSet<String> = HashSet::new();
        let mut outcome = Hammered::default();
        let mut round = 0usize;
        while !stop.load(Ordering::SeqCst) {
            round += 1;
            let prefixes: Vec<String> = {
                let published = published.lock().unwrap();
                let streams = &published.streams;
                let mut chosen: Vec<String> = streams.iter().rev().take(3).cloned().collect();
                if !streams.is_empty() {
                    chosen.push(streams[round % streams.len()].clone());
                }
                chosen
            };
            for prefix in prefixes {
                let mut paths: Vec<String> = (0..3).map(|i| format!("/v1/orders/{prefix}-o{i}")).collect();
                for i in 0..2 {
                    paths.push(format!("/v1/customers/{prefix}-c{i}"));
                    paths.push(format!("/v1/customers/{prefix}-c{i}/orders"));
                }
                for path in paths {
                    outcome.requests += 1;
                    match http.get(format!("{url}{path}")).send().await {
                        Err(error) => outcome.failures.push(format!("{path}: {error}")),
                        Ok(response) => match response.status().as_u16() {
                            200 => {
                                outcome.found += 1;
                                seen.insert(path);
                            }
                            404 if seen.contains(&path) => {
                                outcome.failures.push(format!("{path}: 404 after it was found"))
                            }
                            404 => {}
                            status => {
                                let body = response.text().await.unwrap_or_default();
                                outcome.failures.push(format!("{path}: {status} {body}"));
                            }
                        },
                    }
                }
            }
        }
        outcome
    })
}

/// Waits until `group` has applied every position.
async fn caught_up(store: &Store, group: &str, positions: &[Position]) {
    eventually(&format!("{group} to apply every event"), WAIT, || async {
        for position in positions {
            if !store.has_passed(group, position).await.unwrap() {
                return None;
            }
        }
        Some(())
    })
    .await;
}

/// Waits until the running projector says it applies events to `generation`.
async fn follows(projector: &Running, generation: i64) {
    let expected = format!("eventline_projector_active_generation {generation}\n");
    eventually(&format!("the running projector to follow generation {generation}"), WAIT, || async {
        let metrics = projector.http.get(format!("{}/metrics", projector.url)).send().await.ok()?.text().await.ok()?;
        metrics.contains(&expected).then_some(())
    })
    .await;
}

/// The API's answers equal the fold for every visible order and customer.
async fn api_equals(projector: &Running, model: &ReadModel) {
    for order in model.orders.values().filter(|o| o.placed_at.is_some()) {
        let (status, body) = projector.get(&format!("/v1/orders/{}", order.order_id)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["status"], order.status().as_str(), "{body}");
        assert_eq!(body["total_minor"], order.total_minor, "{body}");
        assert_eq!(body["captured_minor"], order.captured_minor, "{body}");
        assert_eq!(body["refunded_minor"], order.refunded_minor, "{body}");
    }
    for customer in model.customers.values().filter(|c| c.registered_at.is_some()) {
        let (status, body) = projector.get(&format!("/v1/customers/{}", customer.customer_id)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["order_count"], customer.order_count, "{body}");
        assert_eq!(body["lifetime_value_minor"], customer.lifetime_value_minor, "{body}");
        assert_eq!(body["email"], serde_json::json!(customer.email), "{body}");
    }
}

async fn states(db: &Database, group: &str) -> Vec<(i64, GenerationState)> {
    ProjectorService::generations(db.clone(), group)
        .list()
        .await
        .unwrap()
        .iter()
        .map(|g| (g.generation, g.state))
        .collect()
}

async fn rebuild_while_events_arrive(backend: Backend) {
    let env = Arc::new(Env::start().await);
    let settings = settings();
    let group = settings.consumer.group_id.clone();
    let projector = Running::start_with(&env, backend, settings.clone()).await;
    let db = projector.store.database().clone();
    let published = Arc::new(Mutex::new(Published::default()));
    let chunks = Arc::new(AtomicU64::new(0));
    let stop_publishing = Arc::new(AtomicBool::new(false));
    let stop_reading = Arc::new(AtomicBool::new(false));

    // A backlog first, so the build takes a while, then a steady stream and a steady reader.
    let publisher = publish_until(env.clone(), published.clone(), chunks.clone(), stop_publishing.clone());
    eventually("a backlog of 20 streams", WAIT, || async { (chunks.load(Ordering::SeqCst) >= 20).then_some(()) }).await;
    let reader = hammer(projector.url.clone(), published.clone(), stop_reading.clone());
    follows(&projector, 1).await;

    let mut events = Vec::new();
    let summary =
        rebuild::rebuild::<ProjectorService>(context(&env, &settings, &db), CancellationToken::new(), |event| {
            events.push(event.clone())
        })
        .await
        .unwrap();
    assert_eq!(summary.outcome, RebuildOutcome::Swapped, "{summary:?}");
    assert_eq!((summary.generation, summary.serving), (2, 1));
    assert_eq!(summary.group_id, group_of(&group, 2));
    assert!(summary.events_handled > 0, "{summary:?}");
    assert!(matches!(events.first(), Some(RebuildEvent::Started { generation: 2, serving: 1, .. })), "{events:?}");
    assert!(events.iter().any(|e| matches!(e, RebuildEvent::Progress(_))), "{events:?}");
    assert_eq!(states(&db, &group).await, [(1, GenerationState::Previous), (2, GenerationState::Active)]);

    // The running projector moves to generation 2 and applies what arrives after the swap.
    follows(&projector, 2).await;
    let at_swap = chunks.load(Ordering::SeqCst);
    eventually("more streams after the swap", WAIT, || async {
        (chunks.load(Ordering::SeqCst) >= at_swap + 3).then_some(())
    })
    .await;
    stop_publishing.store(true, Ordering::SeqCst);
    publisher.await.unwrap();
    let (all, positions) = {
        let published = published.lock().unwrap();
        (published.events.clone(), published.positions())
    };
    let new = Store::for_generation(db.clone(), 2);
    caught_up(&new, &group_of(&group, 2), &positions).await;
    stop_reading.store(true, Ordering::SeqCst);
    let read = reader.await.unwrap();
    assert!(read.failures.is_empty(), "the query API failed {} times: {:#?}", read.failures.len(), read.failures);
    assert!(read.found > 0 && read.requests > read.found, "{read:?}");

    let expected = ReadModel::fold(&all);
    assert_eq!(new.snapshot().await.unwrap(), expected, "generation 2 equals the fold");
    api_equals(&projector, &expected).await;
    let old = Store::new(db.clone()).snapshot().await.unwrap();
    assert!(!old.orders.is_empty(), "generation 1 keeps its rows");
    assert!(old.applied.is_subset(&expected.applied));

    // Rollback: generation 1 is active again and catches up from its own offsets.
    let rolled = rebuild::rollback(&ProjectorService::generations(db.clone(), &group)).await.unwrap();
    assert_eq!((rolled.activated.generation, rolled.demoted), (1, 2));
    assert_eq!(states(&db, &group).await, [(1, GenerationState::Active), (2, GenerationState::Previous)]);
    follows(&projector, 1).await;
    let mut runner = TestRunner::default();
    let late = events::stream("late".into(), 30).new_tree(&mut runner).unwrap().current();
    let late_positions = env.send_all(&late).await;
    let mut all = all;
    all.extend(late);
    let mut last: BTreeMap<(String, i32), Position> =
        positions.into_iter().map(|p| ((p.topic.clone(), p.partition), p)).collect();
    for position in late_positions {
        last.insert((position.topic.clone(), position.partition), position);
    }
    let positions: Vec<Position> = last.into_values().collect();
    let first = Store::new(db.clone());
    caught_up(&first, &group, &positions).await;
    let expected = ReadModel::fold(&all);
    assert_eq!(first.snapshot().await.unwrap(), expected, "generation 1 caught up to the fold");
    api_equals(&projector, &expected).await;
    projector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_swaps_in_while_events_arrive_and_rolls_back_on_sqlite() {
    rebuild_while_events_arrive(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_swaps_in_while_events_arrive_and_rolls_back_on_postgres() {
    rebuild_while_events_arrive(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_build_is_refused_a_dead_one_cleaned_up_and_an_interrupted_one_leaves_nothing() {
    let env = Env::start().await;
    let settings = settings();
    let group = settings.consumer.group_id.clone();
    let projector = Running::start_with(&env, Backend::Sqlite, settings.clone()).await;
    let db = projector.store.database().clone();
    let positions = env
        .send_all(&[recorded(registered("cust-r", "r@example.com")), recorded(placed("order-r", "cust-r", 100, 1))])
        .await;
    projector.caught_up(&positions).await;
    let before = projector.store.snapshot().await.unwrap();

    // Another build is alive: refused, nothing changes.
    let generations = ProjectorService::generations(db.clone(), &group);
    generations.begin_build(now_ms(), STALE_MS).await.unwrap();
    let refused = rebuild::rebuild::<ProjectorService>(context(&env, &settings, &db), CancellationToken::new(), |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused,
            RebuildError::Generations(GenerationError::Transition(TransitionError::AlreadyBuilding {
                generation: 2,
                ..
            }))
        ),
        "{refused:?}"
    );
    assert!(refused.to_string().contains("generation 2 is being built"), "{refused}");
    assert_eq!(states(&db, &group).await, [(1, GenerationState::Active), (2, GenerationState::Building)]);

    // Its builder died: the next rebuild cleans it up and says so; interrupted before the
    // swap, it leaves generation 1 active and untouched and its own generation retired.
    sqlx::query("UPDATE eventline_generations SET heartbeat_at_ms = $1 WHERE service = 'projector' AND generation = 2")
        .bind(now_ms() - i64::try_from(STALE_AFTER.as_millis()).unwrap() - 1)
        .execute(db.pool())
        .await
        .unwrap();
    let interrupted = CancellationToken::new();
    interrupted.cancel();
    let mut events = Vec::new();
    let summary = rebuild::rebuild::<ProjectorService>(context(&env, &settings, &db), interrupted, |event| {
        events.push(event.clone());
    })
    .await
    .unwrap();
    assert!(matches!(events[0], RebuildEvent::CleanedUp { generation: 2 }), "{events:?}");
    assert!(matches!(events[1], RebuildEvent::Started { generation: 3, serving: 1, .. }), "{events:?}");
    assert_eq!(summary.outcome, RebuildOutcome::Interrupted);
    assert_eq!((summary.generation, summary.serving, summary.cleaned_up.clone()), (3, 1, vec![2]));
    assert_eq!(
        states(&db, &group).await,
        [(1, GenerationState::Active), (2, GenerationState::Retired), (3, GenerationState::Retired)]
    );
    for generation in [2, 3] {
        let table = &Tables::of(generation).names()[0];
        let gone = sqlx::query(&format!("SELECT COUNT(*) FROM {table}")).fetch_one(db.pool()).await;
        assert!(gone.is_err(), "{table} was dropped");
    }
    assert_eq!(projector.store.snapshot().await.unwrap(), before);
    let status = rebuild::status(&ProjectorService::generations(db.clone(), &group)).await.unwrap();
    assert_eq!(status.active, 1);
    assert_eq!(status.generations[0].applied_events, Some(2));
    assert_eq!(status.generations[2].applied_events, None);
    let no_previous = rebuild::rollback(&ProjectorService::generations(db.clone(), &group)).await.unwrap_err();
    assert!(no_previous.to_string().contains("no previous generation"), "{no_previous}");
    projector.stop().await;
}
