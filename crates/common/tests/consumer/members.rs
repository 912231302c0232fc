//! Member heartbeats: the registry on PostgreSQL and SQLite, and a transactional consumer that
//! registers while it runs and deregisters when it stops.

use std::time::Duration;

use eventline_common::db::{Database, DatabaseSettings};
use eventline_common::kafka::consumer::{
    Batch, ConsumerMetrics, Handler, HandlerError, Member, MemberRegistry, OffsetMode, OffsetStore, MEMBER_TTL,
};
use eventline_testkit::{eventually, PgDatabase, SqliteDatabase};

use crate::support::{settings, Env, Running, WAIT};

fn member(group: &str, id: &str, heartbeat_at_ms: i64) -> Member {
    Member {
        group_id: group.to_owned(),
        member_id: id.to_owned(),
        host: "box".to_owned(),
        pid: 7,
        started_at_ms: 1_000,
        heartbeat_at_ms,
    }
}

async fn registry_tracks_heartbeats(url: &str) {
    let db = Database::connect(&DatabaseSettings { url: url.to_owned(), ..DatabaseSettings::default() }).await.unwrap();
    OffsetStore::new(db.clone()).migrate().await.unwrap();
    let registry = MemberRegistry::new(db);
    let ttl = Duration::from_secs(15);

    registry.register(&member("g", "a", 10_000)).await.unwrap();
    registry.register(&member("g", "b", 10_000)).await.unwrap();
    registry.register(&member("other", "c", 10_000)).await.unwrap();
    assert_eq!(registry.all("g").await.unwrap(), [member("g", "a", 10_000), member("g", "b", 10_000)]);

    assert!(registry.heartbeat("g", "a", 30_000).await.unwrap());
    assert!(!registry.heartbeat("g", "gone", 30_000).await.unwrap(), "no row, no heartbeat");
    let live = registry.live("g", 30_000, ttl).await.unwrap();
    assert_eq!(live, [member("g", "a", 30_000)], "b's heartbeat is 20 s old: dead");
    assert_eq!(registry.live("g", 25_000, ttl).await.unwrap().len(), 2, "both fresh at 25 s");

    registry.register(&member("g", "a", 40_000)).await.unwrap();
    assert_eq!(registry.all("g").await.unwrap()[0].heartbeat_at_ms, 40_000, "registering again replaces the row");

    registry.deregister("g", "a").await.unwrap();
    registry.deregister("g", "a").await.unwrap();
    assert_eq!(registry.all("g").await.unwrap(), [member("g", "b", 10_000)]);
    assert_eq!(registry.all("other").await.unwrap().len(), 1, "groups are separate");
}

#[tokio::test]
async fn the_member_registry_tracks_heartbeats_on_postgres() {
    let pg = PgDatabase::create().await;
    registry_tracks_heartbeats(pg.url()).await;
}

#[tokio::test]
async fn the_member_registry_tracks_heartbeats_on_sqlite() {
    let sqlite = SqliteDatabase::create();
    registry_tracks_heartbeats(sqlite.url()).await;
}

struct Nothing;

impl Handler for Nothing {
    async fn handle(&self, _batch: &Batch) -> Result<(), HandlerError> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transactional_consumer_is_a_live_member_until_it_stops() {
    let env = Env::start().await;
    let topic = env.topic(1).await;
    let sqlite = SqliteDatabase::create();
    let db = Database::connect(&DatabaseSettings { url: sqlite.url().to_owned(), ..DatabaseSettings::default() })
        .await
        .unwrap();
    let store = OffsetStore::new(db.clone());
    store.migrate().await.unwrap();
    let registry = MemberRegistry::new(db);
    let mut settings = settings(&[&topic]);
    settings.offset_mode = OffsetMode::Transactional;
    let group = settings.group_id.clone();
    let metrics = ConsumerMetrics::registered_in(&prometheus::Registry::new()).unwrap();
    let running = Running::start(env.runtime(settings, Nothing, &metrics).with_offset_store(store));

    let live = eventually("the consumer registered", WAIT, || async {
        let now = chrono::Utc::now().timestamp_millis();
        let live = registry.live(&group, now, MEMBER_TTL).await.unwrap();
        (!live.is_empty()).then_some(live)
    })
    .await;
    assert_eq!(live.len(), 1, "{live:?}");
    assert_eq!(live[0].pid, i64::from(std::process::id()));
    let first = live[0].heartbeat_at_ms;
    eventually("a later heartbeat", WAIT, || async {
        let rows = registry.all(&group).await.unwrap();
        rows.first().is_some_and(|m| m.heartbeat_at_ms > first).then_some(())
    })
    .await;

    running.stop().await;
    assert!(registry.all(&group).await.unwrap().is_empty(), "a clean stop deletes the row");
}
