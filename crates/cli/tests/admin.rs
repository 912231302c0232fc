//! `eventline admin` (the real binary): the operator commands over HTTP behind the admin token,
//! against a real Apache Kafka broker and SQLite. The answers are the JSON the CLI prints with
//! `--output json`; the commands themselves are tested in replay.rs, dlq.rs and rebuild.rs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use eventline_common::db::{Database, DatabaseSettings};
use eventline_common::kafka::consumer::{Member, MemberRegistry, OffsetStore, PartitionOffset};
use eventline_projector::store::Store;
use eventline_testkit::{eventually, free_port, unique, Broker, SqliteDatabase};
use rdkafka::producer::{FutureProducer, FutureRecord};
use reqwest::StatusCode;
use serde_json::{json, Value};

const TOKEN: &str = "admin-secret-for-tests";
const WAIT: Duration = Duration::from_secs(30);

struct Admin {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl Drop for Admin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Admin {
    async fn start(broker: &Broker, db_url: &str) -> Self {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_eventline"))
            .arg("admin")
            .env("EVENTLINE_KAFKA__BOOTSTRAP_SERVERS", broker.bootstrap_servers())
            .env("EVENTLINE_DATABASE__URL", db_url)
            .env("EVENTLINE_ADMIN__LISTEN", format!("127.0.0.1:{port}"))
            .env("EVENTLINE_ADMIN__TOKEN", TOKEN)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let admin = Self { child, base: format!("http://127.0.0.1:{port}"), http: reqwest::Client::new() };
        eventually("the admin API answers", WAIT, || async {
            admin.http.get(format!("{}/admin/v1/groups", admin.base)).send().await.ok().map(|_| ())
        })
        .await;
        admin
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        if !status.is_success() {
            let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
            assert_eq!(content_type, "application/problem+json", "{path}");
        }
        (status, response.json().await.unwrap())
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }
}

#[tokio::test]
async fn operator_commands_over_http_behind_the_token() {
    let broker = Broker::start().await;
    let topic = unique("admin");
    broker.create_topics(&[(&topic, 2)]).await;
    // As on a cluster `eventline setup` prepared: the catalog's topics exist.
    let catalog = eventline_common::catalog::Catalog::embedded().unwrap();
    let catalog_topics: Vec<(&str, i32)> = catalog.topics().iter().map(|t| (t.name.as_str(), t.partitions)).collect();
    broker.create_topics(&catalog_topics).await;
    let producer: FutureProducer = broker.kafka_settings().client_config().create().unwrap();
    for partition in 0..2 {
        for _ in 0..3 {
            let record: FutureRecord<'_, str, str> =
                FutureRecord::to(&topic).partition(partition).key("k").payload("x");
            producer.send(record, Duration::from_secs(10)).await.map_err(|(e, _)| e).unwrap();
        }
    }
    let db_file = SqliteDatabase::create();
    let db = Database::connect(&DatabaseSettings { url: db_file.url().to_owned(), ..DatabaseSettings::default() })
        .await
        .unwrap();
    let store = OffsetStore::new(db.clone());
    Store::new(db.clone()).migrate().await.unwrap();
    let group = unique("admin-group");
    let at_end: Vec<PartitionOffset> =
        (0..2).map(|partition| PartitionOffset { topic: topic.clone(), partition, next_offset: 3 }).collect();
    store.store(&group, &at_end).await.unwrap();
    let admin = Admin::start(&broker, db_file.url()).await;

    // No token, a wrong token: 401 problem+json, nothing else said.
    let anonymous = admin.http.get(format!("{}/admin/v1/groups/{group}", admin.base)).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let wrong =
        admin.http.get(format!("{}/admin/v1/groups/{group}", admin.base)).bearer_auth("nope").send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.headers()["content-type"], "application/problem+json");

    // Groups: the same description `eventline groups describe --output json` prints.
    let (status, description) = admin.get(&format!("/admin/v1/groups/{group}?topics={topic}")).await;
    assert_eq!(status, StatusCode::OK, "{description}");
    assert_eq!(description["offsets_from"], "database");
    let committed: Vec<i64> =
        description["partitions"].as_array().unwrap().iter().map(|p| p["committed"].as_i64().unwrap()).collect();
    assert_eq!(committed, [3, 3]);
    // No consumer of the group ever reached the broker: no state, no members, and the reason.
    assert_eq!((&description["state"], &description["members"]), (&Value::Null, &json!([])), "{description}");
    let note = description["membership_note"].as_str().unwrap_or_default();
    assert!(note.contains(&format!("the broker does not know group `{group}`")), "{description}");
    let (status, listed) = admin.get("/admin/v1/groups").await;
    assert_eq!(status, StatusCode::OK);
    assert!(listed["groups"].as_array().unwrap().iter().any(|g| g["group"] == group.as_str()), "{listed}");
    let (status, problem) = admin.get(&format!("/admin/v1/groups/{}", unique("nobody"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("has no offsets"), "{problem}");

    // Replay: a plan without `execute`, and nothing changes.
    let stored = || async {
        store.list(&group).await.unwrap().into_iter().map(|o| (o.partition, o.next_offset)).collect::<BTreeMap<_, _>>()
    };
    let replay = format!("/admin/v1/groups/{group}/replay");
    let (status, answer) = admin.post(&replay, json!({"target": "to_earliest", "topics": [{"topic": topic}]})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let rereads: i64 =
        answer["plan"]["partitions"].as_array().unwrap().iter().map(|p| p["to_reread"].as_i64().unwrap()).sum();
    assert_eq!(rereads, 6, "{answer}");
    assert!(answer.get("outcome").is_none());
    assert_eq!(stored().await, BTreeMap::from([(0, 3), (1, 3)]));

    // Bad requests: 400 with what is wrong; nothing changes.
    for (body, says) in [
        (json!({"target": {"to_datetime": "yesterday"}}), "to_datetime"),
        (json!({"target": {"to_offset": 99}}), "offset 99 is outside"),
        (json!({"target": "to_earliest", "topics": [{"topic": "no-such-topic"}]}), "no-such-topic"),
        (json!({"target": "to_earliest", "surprise": 1}), "surprise"),
    ] {
        let (status, problem) = admin.post(&replay, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {problem}");
        assert!(problem["detail"].as_str().unwrap().contains(says), "{body}: {problem}");
    }
    assert_eq!(stored().await, BTreeMap::from([(0, 3), (1, 3)]));

    // A live member (a fresh heartbeat row): 409; once it left, the reset goes through.
    let members = MemberRegistry::new(db.clone());
    let member = Member::of_this_process(&group, eventline_common::kafka::consumer::members::now_ms());
    members.register(&member).await.unwrap();
    let execute = json!({"target": {"to_offset": 1}, "topics": [{"topic": topic}], "execute": true});
    let (status, problem) = admin.post(&replay, execute.clone()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("live members"), "{problem}");
    assert_eq!(stored().await, BTreeMap::from([(0, 3), (1, 3)]));
    members.deregister(&group, &member.member_id).await.unwrap();
    let (status, answer) = admin.post(&replay, execute).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["outcome"]["verified"], true, "{answer}");
    assert_eq!(stored().await, BTreeMap::from([(0, 1), (1, 1)]));

    // Dead letters: a group that never dead-lettered has no dead-letter topic.
    let (status, problem) = admin.get(&format!("/admin/v1/groups/{group}/dlq")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
    let redrive = format!("/admin/v1/groups/{group}/dlq/redrive");
    let (status, problem) = admin.post(&redrive, json!({"select": "all", "group": "other"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    let (status, problem) = admin.post(&redrive, json!({"select": "everything"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    let (status, problem) = admin.post(&redrive, json!({"select": "all"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");

    // The projector's generations: one, active; no previous one to roll back to.
    let (status, generations) = admin.get("/admin/v1/projector/generations").await;
    assert_eq!(status, StatusCode::OK, "{generations}");
    assert!(generations.to_string().contains("active"), "{generations}");
    let (status, problem) = admin.post("/admin/v1/projector/rollback", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    // The same for any rebuildable consumer by name; another name is not found.
    let (status, same) = admin.get("/admin/v1/consumers/projector/generations").await;
    assert_eq!((status, &same), (StatusCode::OK, &generations));
    let (status, problem) = admin.get("/admin/v1/consumers/order_counter/generations").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
    assert!(problem.to_string().contains("these can: projector"), "{problem}");
}
