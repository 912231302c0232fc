use std::time::Duration;

use eventline_common::config::Secret;
use eventline_common::db::{Database, DatabaseSettings};
use eventline_registry::{RegistryApp, RegistrySettings};
use eventline_testkit::{PgDatabase, SqliteDatabase};
use reqwest::header::CONTENT_TYPE;
use reqwest::Method;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

pub const V1_CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// Runs each named scenario `async fn name(db: Db)` once per database backend.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::helpers::Db::Postgres).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::helpers::Db::Sqlite).await
            }
        }
    )*};
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Postgres,
    Sqlite,
}

enum DbGuard {
    Postgres(#[allow(dead_code)] PgDatabase),
    Sqlite(#[allow(dead_code)] SqliteDatabase),
}

/// A registry on a free port with a database of its own; stopped when dropped.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    write_token: Option<String>,
    stop: CancellationToken,
    _db: DbGuard,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub async fn spawn_app(db: Db) -> TestApp {
    spawn_app_with(db, RegistrySettings::default()).await
}

pub async fn spawn_app_with(db: Db, settings: RegistrySettings) -> TestApp {
    let (guard, url) = match db {
        Db::Postgres => {
            let pg = PgDatabase::create().await;
            let url = pg.url().to_owned();
            (DbGuard::Postgres(pg), url)
        }
        Db::Sqlite => {
            let lite = SqliteDatabase::create();
            let url = lite.url().to_owned();
            (DbGuard::Sqlite(lite), url)
        }
    };
    let database =
        Database::connect(&DatabaseSettings { url, max_connections: 5, acquire_timeout: Duration::from_secs(30) })
            .await
            .expect("connect to the test database");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    let base = format!("http://{}", listener.local_addr().expect("local addr"));
    let write_token = Some(settings.write_token.expose().to_owned()).filter(|t| !t.is_empty());
    let app = RegistryApp::build(settings, database, prometheus::Registry::new()).await.expect("build the registry");
    let stop = CancellationToken::new();
    tokio::spawn(app.run(listener, stop.clone()));
    TestApp { base, client: reqwest::Client::new(), write_token, stop, _db: guard }
}

/// Settings with a write token.
pub fn with_token(token: &str) -> RegistrySettings {
    RegistrySettings { write_token: Secret::new(token), ..RegistrySettings::default() }
}

/// An answer: status, content type, raw text and the JSON (or `Null`).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: Option<String>,
    pub text: String,
    pub body: Value,
}

impl Reply {
    pub fn error_code(&self) -> i64 {
        self.body["error_code"].as_i64().unwrap_or_else(|| panic!("no error_code in {self:?}"))
    }

    pub fn message(&self) -> &str {
        self.body["message"].as_str().unwrap_or_else(|| panic!("no message in {self:?}"))
    }

    pub fn id(&self) -> i64 {
        self.body["id"].as_i64().unwrap_or_else(|| panic!("no id in {self:?}"))
    }

    pub fn version(&self) -> i64 {
        self.body["version"].as_i64().unwrap_or_else(|| panic!("no version in {self:?}"))
    }

    /// Asserts a Confluent error answer: status, `error_code`, and exactly those two keys.
    pub fn assert_error(&self, status: u16, code: i64) -> &str {
        assert_eq!((self.status, self.error_code()), (status, code), "{self:?}");
        let keys: Vec<&String> = self.body.as_object().map(|o| o.keys().collect()).unwrap_or_default();
        assert_eq!(keys.len(), 2, "{self:?}");
        assert_eq!(self.content_type.as_deref(), Some(V1_CONTENT_TYPE), "{self:?}");
        self.message()
    }
}

impl TestApp {
    /// A request; writes carry the configured token.
    pub async fn request(&self, method: Method, path: &str, body: Option<&Value>) -> Reply {
        let mut builder = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.write_token {
            builder = builder.bearer_auth(token);
        }
        if let Some(body) = body {
            builder = builder.header(CONTENT_TYPE, V1_CONTENT_TYPE).body(body.to_string());
        }
        send(builder).await
    }

    /// A request with no token, whatever the app is configured with.
    pub async fn anonymous(&self, method: Method, path: &str, body: Option<&Value>) -> Reply {
        let mut builder = self.client.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            builder = builder.header(CONTENT_TYPE, V1_CONTENT_TYPE).body(body.to_string());
        }
        send(builder).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.request(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.request(Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Reply {
        self.request(Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.request(Method::DELETE, path, None).await
    }

    pub async fn register(&self, subject: &str, schema: &str) -> Reply {
        self.post(&format!("/subjects/{subject}/versions"), &json!({ "schema": schema })).await
    }

    pub async fn set_level(&self, subject: &str, level: &str) {
        let reply = self.put(&format!("/config/{subject}"), &json!({ "compatibility": level })).await;
        assert_eq!(reply.status, 200, "{reply:?}");
    }
}

pub async fn send(builder: reqwest::RequestBuilder) -> Reply {
    let response = builder.send().await.expect("the registry answers");
    let status = response.status().as_u16();
    let content_type = response.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let text = response.text().await.expect("a readable body");
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply { status, content_type, text, body }
}

/// A record schema `name` with `id: string` and the given extra fields (JSON fragments).
pub fn record(name: &str, extra_fields: &[&str]) -> String {
    let mut fields = vec![r#"{"name":"id","type":"string"}"#.to_owned()];
    fields.extend(extra_fields.iter().map(|f| (*f).to_owned()));
    format!(r#"{{"type":"record","name":"{name}","namespace":"shop","fields":[{}]}}"#, fields.join(","))
}

/// A subject name no other test uses.
pub fn subject(prefix: &str) -> String {
    eventline_testkit::unique(prefix)
}
