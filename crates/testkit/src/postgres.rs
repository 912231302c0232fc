use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor};

/// The server the tests use: `$TESTKIT_PG_URL`, else the machine's at 127.0.0.1:5432.
pub fn admin_url() -> String {
    std::env::var("TESTKIT_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database of its own on the test server, dropped when this value is dropped.
pub struct PgDatabase {
    name: String,
    url: String,
}

impl PgDatabase {
    pub async fn create() -> Self {
        let name = crate::unique("el_test").replace('-', "_");
        let admin = admin_url();
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {admin}: {e}"));
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
        let options =
            PgConnectOptions::from_str(&admin).unwrap_or_else(|e| panic!("bad admin url: {e}")).database(&name);
        let url = options.to_url_lossy().to_string();
        Self { name, url }
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        let (done, finished) = std::sync::mpsc::channel::<()>();
        // Drop may run inside the test's runtime (even while unwinding), so the database is
        // dropped on a thread of its own, and waited for a bounded time only.
        std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url()).await {
                    let _ = conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await;
                }
            });
            let _ = done.send(());
        });
        let _ = finished.recv_timeout(std::time::Duration::from_secs(10));
    }
}

/// A SQLite database file in a temp dir of its own.
pub struct SqliteDatabase {
    _dir: tempfile::TempDir,
    url: String,
}

impl SqliteDatabase {
    pub fn create() -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("no temp dir: {e}"));
        let url = format!("sqlite://{}/test.db?mode=rwc", dir.path().display());
        Self { _dir: dir, url }
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}
