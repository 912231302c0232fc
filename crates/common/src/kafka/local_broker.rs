//! A local Tansu broker as a child process: what `eventline up` and the test harness run.
//!
//! Tansu 0.6.0 (`cargo install tansu --version 0.6.0 --locked --features libsql,postgres,dynostore`)
//! keeps its log in SQLite inside `data_dir`. It reads `sqlite://a/b.db` as the relative path
//! `a/b.db`, so it runs with `data_dir` as its working directory.
//!
//! One addition to Tansu's own schema: an index on its `header` table. Tansu 0.6.0's SQLite
//! engine reads each fetched record's headers with a query by (topition, offset) on a table with
//! no index, so every record fetched scans every header in the log, and consuming a log costs its
//! length squared (a consumer read ~1,500 events/s at 2,000 events and nothing within minutes at
//! 20,000). Its PostgreSQL schema has that key; the index gives SQLite the same.
//!
//! And one habit changed: Tansu's connection checkpoints its write-ahead log itself once the log
//! holds 1,000 pages, inside the commit of whichever produce crossed the line, `fsync`s included,
//! while every produce queued behind it waits. At 1,000 single-event produces a second (about six
//! pages each) that is several times a second. The local broker checkpoints the log every
//! [`CHECKPOINT_EVERY`] from a connection of its own instead (`PRAGMA wal_checkpoint(PASSIVE)`,
//! which never waits for Tansu's writer and which Tansu's writer never waits for), so Tansu's
//! own checkpoint seldom comes due. On this repository's 2-core VM, the raw producer's
//! single-event p99 at 1,000 events/s went from 10.1-12.8 ms to 6.5-9.3 ms (README, Numbers).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::process::{Child, Command};

use super::KafkaSettings;

/// The command that installs the broker, for messages.
pub const TANSU_INSTALL: &str =
    "cargo install tansu --version 0.6.0 --locked --features libsql,postgres,dynostore";
pub const LOG_FILE: &str = "tansu.log";
/// The index that makes Tansu 0.6.0's SQLite engine read a record's headers by key.
pub const HEADER_INDEX: &str = "CREATE INDEX IF NOT EXISTS eventline_header_by_record ON header (topition, offset_id)";
/// How often the local broker checkpoints Tansu's SQLite write-ahead log (see the module docs).
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum LocalBrokerError {
    #[error("the Tansu broker is not installed (looked at $TANSU_BIN, PATH and ~/.cargo/bin); install it with `{TANSU_INSTALL}` or run `./dev.sh up`, which does")]
    NotInstalled,
    #[error("cannot prepare {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("cannot index the headers in Tansu's log {path}: {source}")]
    IndexHeaders { path: String, source: sqlx::Error },
    #[error("cannot start {binary}: {source}")]
    Spawn { binary: String, source: std::io::Error },
    #[error("tansu exited with {status}; the end of its log:\n{log}")]
    Exited { status: std::process::ExitStatus, log: String },
    #[error("tansu on port {port} did not answer within {timeout:?}; the end of its log:\n{log}")]
    NotReady { port: u16, timeout: Duration, log: String },
}

/// Where the `tansu` binary is: `$TANSU_BIN`, then `PATH`, then `~/.cargo/bin/tansu`.
pub fn tansu_binary() -> Result<PathBuf, LocalBrokerError> {
    if let Some(path) = std::env::var_os("TANSU_BIN") {
        return Ok(PathBuf::from(path));
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).map(|dir| dir.join("tansu")).collect::<Vec<_>>())
        .unwrap_or_default();
    let in_cargo = std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo/bin/tansu"));
    on_path.into_iter().chain(in_cargo).find(|p| p.is_file()).ok_or(LocalBrokerError::NotInstalled)
}

/// A running Tansu process, killed when dropped.
pub struct LocalBroker {
    port: u16,
    data_dir: PathBuf,
    storage: String,
    child: Child,
    /// Checkpoints the log while Tansu runs, when the log is SQLite.
    checkpointer: Option<tokio::task::JoinHandle<()>>,
}

/// Where Tansu keeps the log by default: SQLite in the data directory, so it survives restarts.
pub const SQLITE_STORAGE: &str = "sqlite://tansu.db";

impl LocalBroker {
    /// Starts Tansu on `127.0.0.1:port` with its log in `data_dir`, and waits until it answers.
    pub async fn start(port: u16, data_dir: &Path, ready_timeout: Duration) -> Result<Self, LocalBrokerError> {
        Self::start_with_storage(port, data_dir, SQLITE_STORAGE, ready_timeout).await
    }

    /// Starts Tansu with another `--storage-engine`, e.g. `memory://tansu/` or another SQLite
    /// file (benchmarks choose it).
    pub async fn start_with_storage(
        port: u16,
        data_dir: &Path,
        storage: &str,
        ready_timeout: Duration,
    ) -> Result<Self, LocalBrokerError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|source| LocalBrokerError::Io { path: data_dir.display().to_string(), source })?;
        let child = spawn(port, data_dir, storage)?;
        let mut broker =
            Self { port, data_dir: data_dir.to_path_buf(), storage: storage.to_owned(), child, checkpointer: None };
        broker.wait_ready(ready_timeout).await?;
        broker.tend_log().await?;
        Ok(broker)
    }

    pub fn bootstrap_servers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn log_path(&self) -> PathBuf {
        self.data_dir.join(LOG_FILE)
    }

    /// Resolves when the process exits on its own (a crash), with how it ended.
    pub async fn exited(&mut self) -> LocalBrokerError {
        match self.child.wait().await {
            Ok(status) => LocalBrokerError::Exited { status, log: self.log_tail() },
            Err(source) => LocalBrokerError::Io { path: "tansu process".into(), source },
        }
    }

    /// How the process ended, if it has exited on its own.
    pub fn try_exited(&mut self) -> Option<LocalBrokerError> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(LocalBrokerError::Exited { status, log: self.log_tail() }),
            Ok(None) => None,
            Err(source) => Some(LocalBrokerError::Io { path: "tansu process".into(), source }),
        }
    }

    /// Kills the process (its log stays on disk).
    pub async fn kill(&mut self) {
        self.stop_checkpointing();
        let _ = self.child.kill().await;
    }

    /// Starts the process again on the same port and log, after [`kill`](Self::kill).
    pub async fn restart(&mut self, ready_timeout: Duration) -> Result<(), LocalBrokerError> {
        self.kill().await;
        self.child = spawn(self.port, &self.data_dir, &self.storage)?;
        self.wait_ready(ready_timeout).await?;
        self.tend_log().await
    }

    /// The SQLite file of the log, when the storage engine is `sqlite://`.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        let file = self.storage.strip_prefix("sqlite://")?;
        Some(self.data_dir.join(file))
    }

    /// The two changes to Tansu's SQLite log (see the module docs), once the broker has created
    /// its tables; a no-op when the storage is not SQLite. Adds the index on its `header` table
    /// (if missing), then checkpoints the log from the same connection while the broker runs.
    /// Runs before any client is told where the broker is, so nothing writes beside the index.
    async fn tend_log(&mut self) -> Result<(), LocalBrokerError> {
        use sqlx::{ConnectOptions as _, Executor as _};
        self.stop_checkpointing();
        let Some(path) = self.sqlite_path() else { return Ok(()) };
        let io_error = |source| LocalBrokerError::IndexHeaders { path: path.display().to_string(), source };
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .busy_timeout(Duration::from_secs(10))
            .connect()
            .await
            .map_err(io_error)?;
        conn.execute(HEADER_INDEX).await.map_err(io_error)?;
        self.checkpointer = Some(tokio::spawn(checkpoint_log(conn)));
        Ok(())
    }

    fn stop_checkpointing(&mut self) {
        if let Some(task) = self.checkpointer.take() {
            task.abort();
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    async fn wait_ready(&mut self, timeout: Duration) -> Result<(), LocalBrokerError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(LocalBrokerError::Exited { status, log: self.log_tail() });
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok()
                && answers_metadata(&self.bootstrap_servers()).await
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(LocalBrokerError::NotReady { port: self.port, timeout, log: self.log_tail() });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for LocalBroker {
    fn drop(&mut self) {
        self.stop_checkpointing();
    }
}

/// Checkpoints the SQLite log `conn` is open on every [`CHECKPOINT_EVERY`] until aborted.
async fn checkpoint_log(mut conn: sqlx::SqliteConnection) {
    use sqlx::Executor as _;
    let mut ticks = tokio::time::interval(CHECKPOINT_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        // Busy while Tansu checkpoints itself; the next tick tries again.
        if let Err(error) = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").await {
            tracing::debug!(%error, "the broker's log was not checkpointed this time");
        }
    }
}

/// `true` when a broker at `bootstrap` answers a metadata request within two seconds.
pub async fn answers_metadata(bootstrap: &str) -> bool {
    let config = KafkaSettings::for_bootstrap(bootstrap).client_config();
    tokio::task::spawn_blocking(move || {
        config
            .create::<BaseConsumer>()
            .map(|c| c.fetch_metadata(None, Duration::from_secs(2)).is_ok())
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

fn spawn(port: u16, data_dir: &Path, storage: &str) -> Result<Child, LocalBrokerError> {
    let binary = tansu_binary()?;
    let url = format!("tcp://127.0.0.1:{port}");
    let log_path = data_dir.join(LOG_FILE);
    let io_error = |source| LocalBrokerError::Io { path: log_path.display().to_string(), source };
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).map_err(io_error)?;
    let log_err = log.try_clone().map_err(io_error)?;
    Command::new(&binary)
        .arg("broker")
        .args(["--listener-url", &url, "--advertised-listener-url", &url])
        .args(["--storage-engine", storage])
        .current_dir(data_dir)
        // Tansu reads these from the environment too; ours must not leak in.
        .env_remove("SCHEMA_REGISTRY")
        .env_remove("STORAGE_ENGINE")
        .env_remove("LISTENER_URL")
        .env_remove("ADVERTISED_LISTENER_URL")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| LocalBrokerError::Spawn { binary: binary.display().to_string(), source })
}
