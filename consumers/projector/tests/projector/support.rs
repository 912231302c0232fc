//! A running projector over a fresh broker, registry and database; publishing events to it.

use std::collections::BTreeMap;
use std::time::Duration;

use eventline_common::catalog::Catalog;
use eventline_common::db::{Database, DatabaseSettings};
use eventline_common::envelope::{Envelope, TraceParent};
use eventline_common::events::DomainEvent;
use eventline_common::kafka::producer::{EventProducer, OutgoingEvent, ProducerSettings};
use eventline_common::kafka::Position;
use eventline_common::service::{prepare, Platform, Prepared};
use eventline_e2e::Stack;
use eventline_projector::domain::{Fact, Recorded};
use eventline_projector::store::Store;
use eventline_projector::{ProjectorService, ProjectorSettings};
use eventline_testkit::{eventually, unique, PgDatabase, SqliteDatabase};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database for one test, dropped with it.
pub enum TestDb {
    Sqlite(SqliteDatabase),
    Postgres(PgDatabase),
}

impl TestDb {
    pub async fn create(backend: Backend) -> (Self, Database) {
        let test_db = match backend {
            Backend::Sqlite => TestDb::Sqlite(SqliteDatabase::create()),
            Backend::Postgres => TestDb::Postgres(PgDatabase::create().await),
        };
        let url = match &test_db {
            TestDb::Sqlite(db) => db.url().to_owned(),
            TestDb::Postgres(db) => db.url().to_owned(),
        };
        let db = Database::connect(&DatabaseSettings { url, ..DatabaseSettings::default() }).await.unwrap();
        (test_db, db)
    }
}

/// Settings for tests: a unique group, quick batches, a short read-your-writes timeout.
pub fn settings() -> ProjectorSettings {
    let mut settings = ProjectorSettings::default();
    settings.consumer.group_id = unique("projector");
    settings.consumer.batch_linger = Duration::from_millis(20);
    settings.consumer.commit_interval = Duration::from_millis(200);
    settings.consumer.lag_report_interval = Duration::from_millis(500);
    settings.wait_timeout = Duration::from_secs(10);
    settings.default_page_size = 2;
    settings.listen = "127.0.0.1:0".into();
    settings
}

/// A broker with the catalog's topics, the registry, and a producer of catalog events.
pub struct Env {
    pub stack: Stack,
    producer: EventProducer,
}

impl Env {
    pub async fn start() -> Self {
        let stack = Stack::start().await;
        let producer = EventProducer::new(&stack.broker.kafka_settings(), &ProducerSettings::default()).unwrap();
        Self { stack, producer }
    }

    /// Publishes `event` (its id and time in the envelope) to its catalog topic; its position.
    pub async fn send(&self, event: &Recorded) -> Position {
        match &event.fact {
            Fact::OrderPlaced(e) => self.send_as(e, event).await,
            Fact::OrderCancelled(e) => self.send_as(e, event).await,
            Fact::OrderShipped(e) => self.send_as(e, event).await,
            Fact::PaymentAuthorized(e) => self.send_as(e, event).await,
            Fact::PaymentCaptured(e) => self.send_as(e, event).await,
            Fact::PaymentFailed(e) => self.send_as(e, event).await,
            Fact::PaymentRefunded(e) => self.send_as(e, event).await,
            Fact::CustomerRegistered(e) => self.send_as(e, event).await,
            Fact::CustomerEmailChanged(e) => self.send_as(e, event).await,
        }
    }

    async fn send_as<E: DomainEvent>(&self, typed: &E, event: &Recorded) -> Position {
        let (registered, value) = self.stack.contracts.encode(typed).unwrap();
        let envelope = Envelope {
            id: event.stamp.event_id,
            source: "/tests/projector".into(),
            event_type: registered.spec.full_name.clone(),
            time: event.stamp.time,
            subject: None,
            traceparent: Some(TraceParent::new_root()),
            correlation_id: None,
        };
        self.producer
            .send(OutgoingEvent { topic: &registered.spec.topic, key: typed.key(), value: &value, envelope: &envelope })
            .await
            .unwrap()
    }

    /// Publishes `events` in order; the last position per topic and partition.
    pub async fn send_all(&self, events: &[Recorded]) -> Vec<Position> {
        let mut last = BTreeMap::new();
        for event in events {
            let position = self.send(event).await;
            last.insert((position.topic.clone(), position.partition), position);
        }
        last.into_values().collect()
    }

    /// Builds a projector over `db` with `settings`, its query API bound.
    pub async fn projector(&self, settings: ProjectorSettings, db: Database) -> Prepared<ProjectorService> {
        let platform = Platform {
            kafka: self.stack.broker.kafka_settings(),
            db,
            registry_client: self.stack.registry.client.clone(),
            catalog: Catalog::embedded().unwrap(),
            metrics: prometheus::Registry::new(),
        };
        prepare::<ProjectorService>(platform, settings).await.unwrap()
    }
}

/// A projector running in a task, with its query API on a free port.
pub struct Running {
    pub url: String,
    pub store: Store,
    pub group: String,
    pub http: reqwest::Client,
    token: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
    _db: TestDb,
}

impl Running {
    pub async fn start(env: &Env, backend: Backend) -> Self {
        Self::start_with(env, backend, settings()).await
    }

    pub async fn start_with(env: &Env, backend: Backend, settings: ProjectorSettings) -> Self {
        let (test_db, db) = TestDb::create(backend).await;
        let group = settings.consumer.group_id.clone();
        let app = env.projector(settings, db).await;
        let store = app.service().store().clone();
        let url = format!("http://{}", app.local_addr().unwrap());
        let token = CancellationToken::new();
        let task = tokio::spawn(app.run(token.clone()));
        Self { url, store, group, http: reqwest::Client::new(), token, task, _db: test_db }
    }

    /// Waits until every position has been applied.
    pub async fn caught_up(&self, positions: &[Position]) {
        eventually("the projector to apply every event", WAIT, || async {
            for position in positions {
                if !self.store.has_passed(&self.group, position).await.unwrap() {
                    return None;
                }
            }
            Some(())
        })
        .await;
    }

    /// `GET` a path; the status and the JSON body.
    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let response = self.http.get(format!("{}{path}", self.url)).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    pub async fn stop(self) {
        self.token.cancel();
        match tokio::time::timeout(WAIT, self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => panic!("projector failed: {error:#}"),
            Ok(Err(join)) => panic!("projector task failed: {join}"),
            Err(_) => panic!("projector did not stop within {WAIT:?}"),
        }
    }
}
