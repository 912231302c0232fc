use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use tokio::process::{Child, Command};

/// Where to find the `tansu` binary: `$TANSU_BIN`, then `PATH`, then `~/.cargo/bin/tansu`.
pub fn tansu_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("TANSU_BIN") {
        return Ok(PathBuf::from(path));
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join("tansu");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    if let Some(home) = std::env::var_os("HOME") {
        let candidate = Path::new(&home).join(".cargo/bin/tansu");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!("the `tansu` broker is not installed; run `./dev.sh test`, which installs it")
}

/// A Tansu broker for one test: its own port, its own SQLite log, killed on drop.
pub struct Broker {
    bootstrap: String,
    port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

impl Broker {
    /// Starts a broker and waits until it answers metadata requests.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("no temp dir: {e}"));
        Self::start_in(dir).await.unwrap_or_else(|e| panic!("cannot start the Tansu broker: {e:#}"))
    }

    async fn start_in(dir: tempfile::TempDir) -> anyhow::Result<Self> {
        let port = crate::free_port();
        let child = spawn_tansu(port, dir.path())?;
        let mut broker = Self { bootstrap: format!("127.0.0.1:{port}"), port, dir, child };
        broker.wait_ready().await?;
        Ok(broker)
    }

    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// Stops the broker (SIGKILL) and starts it again on the same port with the same log.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.resume().await;
    }

    /// Kills the broker; its log stays for [`resume`](Self::resume).
    pub async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Starts the broker again after [`stop`](Self::stop).
    pub async fn resume(&mut self) {
        self.child = spawn_tansu(self.port, self.dir.path())
            .unwrap_or_else(|e| panic!("cannot restart Tansu: {e:#}"));
        self.wait_ready().await.unwrap_or_else(|e| panic!("Tansu did not come back: {e:#}"));
    }

    /// Creates topics with the given partition counts and waits until they are visible.
    pub async fn create_topics(&self, topics: &[(&str, i32)]) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .unwrap_or_else(|e| panic!("admin client: {e}"));
        let new: Vec<NewTopic<'_>> =
            topics.iter().map(|(name, p)| NewTopic::new(name, *p, TopicReplication::Fixed(1))).collect();
        let results = admin
            .create_topics(new.iter(), &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))))
            .await
            .unwrap_or_else(|e| panic!("create topics: {e}"));
        for result in results {
            if let Err((topic, code)) = result {
                panic!("cannot create topic {topic}: {code}");
            }
        }
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait()? {
                let log = std::fs::read_to_string(self.dir.path().join("tansu.log")).unwrap_or_default();
                bail!("tansu exited with {status}; its log ends:\n{}", tail(&log, 20));
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok()
                && self.metadata_answers().await
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("tansu on port {} did not answer within 30s", self.port);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn metadata_answers(&self) -> bool {
        let bootstrap = self.bootstrap.clone();
        tokio::task::spawn_blocking(move || {
            let consumer: Result<rdkafka::consumer::BaseConsumer, _> =
                ClientConfig::new().set("bootstrap.servers", &bootstrap).create();
            consumer
                .map(|c| {
                    use rdkafka::consumer::Consumer as _;
                    c.fetch_metadata(None, Duration::from_secs(2)).is_ok()
                })
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false)
    }
}

fn spawn_tansu(port: u16, dir: &Path) -> anyhow::Result<Child> {
    let binary = tansu_binary()?;
    let url = format!("tcp://127.0.0.1:{port}");
    let log = std::fs::File::create(dir.join("tansu.log")).context("tansu log file")?;
    Command::new(&binary)
        .arg("broker")
        .args(["--listener-url", &url, "--advertised-listener-url", &url])
        // Tansu reads `sqlite://a/b.db` as the relative path `a/b.db`, so run it inside `dir`.
        .args(["--storage-engine", "sqlite://tansu.db"])
        .current_dir(dir)
        .env_remove("SCHEMA_REGISTRY")
        .env_remove("STORAGE_ENGINE")
        .env_remove("LISTENER_URL")
        .env_remove("ADVERTISED_LISTENER_URL")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("tansu log file")?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot run {}", binary.display()))
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
