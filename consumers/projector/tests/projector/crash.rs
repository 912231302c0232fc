//! Crash test: the real `eventline-projector` process is killed with SIGKILL at random points
//! while thousands of events (with redeliveries) are published and caught up, and restarted each
//! time; in the end the read model equals the fold of the events, each applied exactly once.
//! On SQLite (a file shared by the test and the process) and on PostgreSQL.
//!
//! The kill points come from a seeded generator; a failure prints the seed, and
//! `CRASH_SEED=<seed>` replays the same stream and delays.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventline_common::db::{Database, DatabaseSettings};
use eventline_projector::domain::{ReadModel, Recorded};
use eventline_projector::store::Store;
use eventline_testkit::{eventually, free_port, unique, PgDatabase, SqliteDatabase};
use proptest::strategy::{Strategy as _, ValueTree as _};
use sqlx::Row as _;
use tokio::process::{Child, Command};

use crate::events::{self, Seed};
use crate::support::Env;

/// Events published in all (redeliveries included), in streams of up to `STREAM_MAX`.
const EVENTS: usize = 3_000;
const STREAM_MAX: usize = 40;
const PUBLISH_CHUNK: usize = 100;
const PUBLISH_PAUSE: Duration = Duration::from_millis(150);
/// SIGKILLs at least, and of those at least this many after publishing finished.
const KILLS: usize = 6;
const KILLS_AFTER_PUBLISHING: usize = 2;
/// How long after the projector has made progress it is killed: a random point in this range.
const KILL_AFTER_MS: std::ops::Range<u64> = 100..700;
/// How long a restarted projector may take to apply anything new.
const PROGRESS_DEADLINE: Duration = Duration::from_secs(60);
/// How long the last projector may take to apply everything.
const CATCH_UP_DEADLINE: Duration = Duration::from_secs(120);
const EXIT_DEADLINE: Duration = Duration::from_secs(30);

/// splitmix64: a small seeded generator for kill delays, so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn in_range(&mut self, range: std::ops::Range<u64>) -> u64 {
        range.start + self.next() % (range.end - range.start)
    }
}

/// About `EVENTS` events over many orders, payments and customers, with redeliveries.
fn the_stream(seed: Seed) -> Vec<Recorded> {
    let mut runner = seed.runner();
    let mut all = Vec::with_capacity(EVENTS + STREAM_MAX);
    let mut stream = 0;
    while all.len() < EVENTS {
        let events = events::stream(format!("crash{stream}"), STREAM_MAX).new_tree(&mut runner).unwrap().current();
        all.extend(events);
        stream += 1;
    }
    all.truncate(EVENTS);
    all
}

/// The projector binary over the test's broker, registry and database, configured by
/// environment variables only, its output appended to `log`.
struct Projector {
    env: Vec<(&'static str, String)>,
    log: PathBuf,
}

impl Projector {
    fn spawn(&self) -> Child {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_eventline-projector"));
        command
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true);
        if let Ok(path) = std::env::var("PATH") {
            command.env("PATH", path);
        }
        command.spawn().unwrap()
    }
}

async fn signal(child: &Child, signal: &str) {
    let pid = child.id().expect("the projector is running").to_string();
    let status = Command::new("kill").args([signal, &pid]).status().await.unwrap();
    assert!(status.success(), "kill {signal} {pid} failed");
}

async fn applied_count(db: &Database) -> i64 {
    sqlx::query("SELECT COUNT(*) FROM projector_applied_events")
        .fetch_one(db.pool())
        .await
        .map(|row| row.get::<i64, _>(0))
        // Before the first projector has migrated, the table does not exist yet.
        .unwrap_or(0)
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_model_survives_sigkill_at_random_points_on_sqlite() {
    let db = SqliteDatabase::create();
    survives_sigkill_at_random_points("sqlite", db.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_model_survives_sigkill_at_random_points_on_postgres() {
    let db = PgDatabase::create().await;
    survives_sigkill_at_random_points("postgres", db.url()).await;
}

/// Publishes the stream while killing and restarting a projector over the database at `url`,
/// then lets a last one catch up and stop, and compares its rows with the fold.
async fn survives_sigkill_at_random_points(name: &str, db_url: &str) {
    let seed = Seed::from_env("CRASH_SEED", &format!("crash {name}"));
    let mut rng = Rng(seed.value());
    let events = the_stream(seed);
    let distinct: HashSet<_> = events.iter().map(Recorded::event_id).collect();
    assert!(distinct.len() < events.len(), "the stream has redeliveries");

    let env = Arc::new(Env::start().await);
    let group = unique("projector-crash");
    let listen = format!("127.0.0.1:{}", free_port());
    // Kept when the test fails, for reading; removed when it passes.
    let dir = std::env::temp_dir().join(&group);
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("projector.log");
    println!("[{name}] projector output: {}", log.display());
    let projector = Projector {
        env: vec![
            ("EVENTLINE_KAFKA__BOOTSTRAP_SERVERS", env.stack.broker.bootstrap_servers()),
            ("EVENTLINE_SCHEMA_REGISTRY__URL", env.stack.registry.url.clone()),
            ("EVENTLINE_DATABASE__URL", db_url.to_owned()),
            ("EVENTLINE_CONSUMERS__PROJECTOR__LISTEN", listen.clone()),
            ("EVENTLINE_CONSUMERS__PROJECTOR__CONSUMER__GROUP_ID", group.clone()),
            // A killed member holds its partitions until its session times out (45 s by
            // default): keep that short so restarts get them back soon.
            (
                "EVENTLINE_CONSUMERS__PROJECTOR__CONSUMER__PROPERTIES",
                r#"{"session.timeout.ms"="6000","heartbeat.interval.ms"="1000"}"#.to_owned(),
            ),
            ("RUST_LOG", "warn".to_owned()),
        ],
        log: log.clone(),
    };
    let db =
        Database::connect(&DatabaseSettings { url: db_url.to_owned(), ..DatabaseSettings::default() }).await.unwrap();
    let store = Store::new(db.clone());

    let published = Arc::new(AtomicBool::new(false));
    let publisher = tokio::spawn({
        let env = env.clone();
        let events = events.clone();
        let published = published.clone();
        async move {
            // In chunks, as a stream arriving over a few seconds rather than all at once.
            let mut last = BTreeMap::new();
            for chunk in events.chunks(PUBLISH_CHUNK) {
                for position in env.send_all(chunk).await {
                    last.insert((position.topic.clone(), position.partition), position);
                }
                tokio::time::sleep(PUBLISH_PAUSE).await;
            }
            published.store(true, Ordering::SeqCst);
            last.into_values().collect::<Vec<_>>()
        }
    });

    let started = Instant::now();
    let (mut kills, mut kills_after_publishing) = (0, 0);
    while kills < KILLS || kills_after_publishing < KILLS_AFTER_PUBLISHING {
        let before = applied_count(&db).await;
        let mut child = projector.spawn();
        // Kill only once this run has applied something (or there is nothing left to apply),
        // so each kill lands in the middle of real work.
        let total = distinct.len() as i64;
        let deadline = Instant::now() + PROGRESS_DEADLINE;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the projector exited by itself ({status}):\n{}", tail(&log));
            }
            let now = applied_count(&db).await;
            if now > before || (published.load(Ordering::SeqCst) && now == total) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "a restarted projector applied nothing within {PROGRESS_DEADLINE:?} (seed {seed}):\n{}",
                tail(&log)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let delay = rng.in_range(KILL_AFTER_MS);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let during_publishing = !published.load(Ordering::SeqCst);
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the projector exited by itself ({status}):\n{}", tail(&log));
        }
        signal(&child, "-KILL").await;
        child.wait().await.unwrap();
        kills += 1;
        if !during_publishing {
            kills_after_publishing += 1;
        }
        println!(
            "[{name}] kill {kills} after {delay} ms ({}), {} of {} events applied, at {:?}",
            if during_publishing { "publishing" } else { "catching up" },
            applied_count(&db).await,
            distinct.len(),
            started.elapsed()
        );
    }
    let last: Vec<_> = publisher.await.unwrap();

    let mut child = projector.spawn();
    eventually("the projector to apply every event", CATCH_UP_DEADLINE, || async {
        for position in &last {
            if !store.has_passed(&group, position).await.unwrap() {
                return None;
            }
        }
        Some(())
    })
    .await;
    // SIGTERM once the process is up (its signal handlers installed), as an operator would.
    let http = reqwest::Client::new();
    eventually("the projector to be ready", CATCH_UP_DEADLINE, || async {
        let ready = http.get(format!("http://{listen}/health/ready")).send().await;
        ready.ok().filter(|r| r.status().is_success()).map(|_| ())
    })
    .await;
    signal(&child, "-TERM").await;
    let status = tokio::time::timeout(EXIT_DEADLINE, child.wait())
        .await
        .unwrap_or_else(|_| panic!("the projector did not stop within {EXIT_DEADLINE:?}"))
        .unwrap();
    assert!(status.success(), "the projector did not stop cleanly ({status}):\n{}", tail(&log));
    println!("[{name}] {kills} kills, caught up and stopped after {:?}", started.elapsed());

    let model = store.snapshot().await.unwrap();
    let expected = ReadModel::fold(&events);
    assert_eq!(applied_count(&db).await, distinct.len() as i64, "each distinct event is applied once (seed {seed})");
    assert_eq!(model.applied, expected.applied, "applied event ids (seed {seed})");
    assert_eq!(
        differing(&model.customers, &expected.customers),
        Vec::<String>::new(),
        "customers that differ from the fold (seed {seed})"
    );
    assert_eq!(
        differing(&model.orders, &expected.orders),
        Vec::<String>::new(),
        "orders that differ from the fold (seed {seed})"
    );
    assert_eq!(
        differing(&model.payments, &expected.payments),
        Vec::<String>::new(),
        "payments that differ from the fold (seed {seed})"
    );
    assert!(model == expected, "the read model differs from the fold (seed {seed})");
    std::fs::remove_dir_all(&dir).ok();
}

/// The rows of `actual` and `expected` that differ (missing, extra or other values), shown.
fn differing<T: PartialEq + std::fmt::Debug>(
    actual: &BTreeMap<String, T>,
    expected: &BTreeMap<String, T>,
) -> Vec<String> {
    let keys: std::collections::BTreeSet<_> = actual.keys().chain(expected.keys()).collect();
    keys.into_iter()
        .filter(|key| actual.get(*key) != expected.get(*key))
        .take(5)
        .map(|key| format!("{key}: got {:?}, expected {:?}", actual.get(key), expected.get(key)))
        .collect()
}
