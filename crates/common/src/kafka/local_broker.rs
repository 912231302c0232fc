//! A local Apache Kafka broker as a child process: what `eventline up`, the tests and the
//! benchmarks run.
//!
//! Kafka [`KAFKA_VERSION`] comes from Maven Central: `kafka/pom.xml` names it, and `./dev.sh`
//! copies its jars once per machine into [`kafka_home`] (beside a small launcher built from
//! `kafka/src`). The broker runs in KRaft mode as one combined broker and controller, with
//! loopback listeners, a bounded heap and its log in `<data_dir>/log`, kept across restarts.
//!
//! The launcher (`eventline.KafkaLauncher`) formats a new log directory (Kafka's StorageTool,
//! `--standalone`, with the SCRAM users of [`LocalBrokerConfig::scram_users`]), then runs
//! `kafka.Kafka`. It also reads its standard input, whose other end
//! this process holds: when this process exits for any reason, SIGKILL included, the broker sees
//! end-of-file and shuts down. As a second guard, `kafka.pid` in the data directory names the
//! running broker, and a start that finds a broker of an earlier run still alive on the same
//! directory stops it first, and says so.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, ChildStdin, Command};

use super::connection::check_connection;
use super::KafkaSettings;

/// The Apache Kafka release the local broker runs: `kafka.version` in `kafka/pom.xml`, and the
/// image of `docker-compose.yml` has the same major.minor (tests hold both to this).
pub const KAFKA_VERSION: &str = "4.1.1";
/// The broker's own log (log4j) and the launcher's output, in the data directory.
pub const LOG_FILE: &str = "kafka.log";
/// The heap the local broker gets unless told otherwise.
pub const DEFAULT_HEAP: &str = "768m";
/// How to fetch Kafka, for messages.
pub const KAFKA_INSTALL: &str = "./dev.sh up (or ./dev.sh test) fetches it once per machine: \
mvn -q -f kafka/pom.xml package dependency:copy-dependencies -DoutputDirectory=<kafka home>/libs, \
then copy kafka/target/eventline-local-kafka.jar there too";

const PID_FILE: &str = "kafka.pid";
const CONTROLLER_PORT_FILE: &str = "controller.port";
const LAUNCHER_CLASS: &str = "eventline.KafkaLauncher";
/// How long one readiness look waits for the broker's metadata answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);
/// How long a broker gets to shut down cleanly before it is killed.
const STOP_DEADLINE: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum LocalBrokerError {
    #[error("Apache Kafka {KAFKA_VERSION} is not installed in {home} (no launcher jar in libs/); {KAFKA_INSTALL}")]
    NotInstalled { home: String },
    #[error("Java 17 or newer is needed to run the local Apache Kafka broker, and `{java}` cannot be run ({source}); install a JDK (e.g. `apt-get install openjdk-17-jre-headless`), set JAVA_HOME, or connect to an existing broker with --external-broker")]
    JavaMissing { java: String, source: std::io::Error },
    #[error("cannot prepare {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("the Kafka broker exited with {status}; the end of its log ({log_path}):\n{log}")]
    Exited { status: std::process::ExitStatus, log_path: String, log: String },
    #[error(
        "the Kafka broker on port {port} did not answer within {timeout:?}; the end of its log ({log_path}):\n{log}"
    )]
    NotReady { port: u16, timeout: Duration, log_path: String, log: String },
    #[error("SCRAM user `{name}`: a name or password with `,`, `[`, `]`, `=` or `\"` cannot be given to Kafka's storage tool")]
    InvalidScramUser { name: String },
}

/// A SCRAM mechanism a local broker can hold credentials for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScramMechanism {
    Sha256,
    Sha512,
}

impl ScramMechanism {
    /// The name Kafka and librdkafka (`sasl.mechanism`) use.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Sha256 => "SCRAM-SHA-256",
            Self::Sha512 => "SCRAM-SHA-512",
        }
    }
}

/// A SCRAM user the broker's cluster is created with.
#[derive(Clone)]
pub struct ScramUser {
    pub mechanism: ScramMechanism,
    pub name: String,
    pub password: String,
}

impl std::fmt::Debug for ScramUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramUser")
            .field("mechanism", &self.mechanism)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl ScramUser {
    /// The `--add-scram` value of Kafka's storage tool:
    /// `SCRAM-SHA-256=[name=alice,password=alice-secret]`.
    fn format_arg(&self) -> Result<String, LocalBrokerError> {
        let plain = |text: &str| !text.is_empty() && !text.contains([',', '[', ']', '=', '"']);
        if !plain(&self.name) || !plain(&self.password) {
            return Err(LocalBrokerError::InvalidScramUser { name: self.name.clone() });
        }
        Ok(format!("{}=[name={},password={}]", self.mechanism.as_str(), self.name, self.password))
    }
}

/// Where Kafka's jars are: `$EVENTLINE_KAFKA_HOME`, else `~/.cache/eventline/kafka-<version>`
/// (`$XDG_CACHE_HOME` instead of `~/.cache` when set). The jars are in its `libs/`.
pub fn kafka_home() -> PathBuf {
    if let Some(home) = std::env::var_os("EVENTLINE_KAFKA_HOME") {
        return PathBuf::from(home);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    cache.join("eventline").join(format!("kafka-{KAFKA_VERSION}"))
}

/// `$JAVA_HOME/bin/java` when `JAVA_HOME` is set, else `java` from `PATH`.
pub fn java_binary() -> PathBuf {
    std::env::var_os("JAVA_HOME").map_or_else(|| PathBuf::from("java"), |home| Path::new(&home).join("bin/java"))
}

/// How to run one local broker.
#[derive(Debug, Clone)]
pub struct LocalBrokerConfig {
    /// The client port on 127.0.0.1.
    pub port: u16,
    /// Holds `server.properties`, the log (`log/`), the broker's own log file and its pid.
    pub data_dir: PathBuf,
    pub ready_timeout: Duration,
    /// The JVM's maximum heap, as `-Xmx` takes it.
    pub heap: String,
    /// Client listeners on 127.0.0.1 besides PLAINTEXT on `port`, each named by its security
    /// protocol (`SASL_SSL`, `SSL`, `SASL_PLAINTEXT`), with its port. Their own settings
    /// (`listener.name.sasl_ssl.…`) go in `properties`. The controller and the broker's own
    /// traffic stay on PLAINTEXT, and so does the readiness check.
    pub extra_listeners: BTreeMap<String, u16>,
    /// `server.properties` entries applied over the defaults.
    pub properties: BTreeMap<String, String>,
    /// SCRAM credentials stored when the log directory is formatted, that is at the first start
    /// on a new `data_dir` only (a test's broker; `eventline up` has none). They are passed on
    /// the launcher's command line, so they suit test users, not real secrets.
    pub scram_users: Vec<ScramUser>,
}

impl LocalBrokerConfig {
    pub fn new(port: u16, data_dir: &Path, ready_timeout: Duration) -> Self {
        Self {
            port,
            data_dir: data_dir.to_path_buf(),
            ready_timeout,
            heap: DEFAULT_HEAP.to_owned(),
            extra_listeners: BTreeMap::new(),
            properties: BTreeMap::new(),
            scram_users: Vec::new(),
        }
    }
}

/// A running Kafka broker, stopped when dropped.
pub struct LocalBroker {
    config: LocalBrokerConfig,
    child: Child,
    /// The launcher shuts the broker down when this end of its standard input closes.
    lifeline: Option<ChildStdin>,
    started_in: Duration,
}

impl LocalBroker {
    /// Starts Kafka on `127.0.0.1:port` with its log in `data_dir`, and waits until it answers.
    pub async fn start(port: u16, data_dir: &Path, ready_timeout: Duration) -> Result<Self, LocalBrokerError> {
        Self::start_with(LocalBrokerConfig::new(port, data_dir, ready_timeout)).await
    }

    pub async fn start_with(mut config: LocalBrokerConfig) -> Result<Self, LocalBrokerError> {
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| LocalBrokerError::Io { path, source }
        };
        std::fs::create_dir_all(&config.data_dir).map_err(io(&config.data_dir))?;
        // The broker runs in the data directory; every path it is given must not depend on that.
        config.data_dir = std::path::absolute(&config.data_dir).map_err(io(&config.data_dir))?;
        stop_stale_broker(&config.data_dir).await;
        let started = Instant::now();
        let (child, lifeline) = spawn(&config)?;
        let mut broker = Self { config, child, lifeline: Some(lifeline), started_in: Duration::ZERO };
        broker.wait_ready().await?;
        broker.started_in = started.elapsed();
        Ok(broker)
    }

    pub fn bootstrap_servers(&self) -> String {
        format!("127.0.0.1:{}", self.config.port)
    }

    pub fn port(&self) -> u16 {
        self.config.port
    }

    pub fn log_path(&self) -> PathBuf {
        self.config.data_dir.join(LOG_FILE)
    }

    /// The broker process's id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// From spawning the JVM to the first answered metadata request, at the last (re)start.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// How the process ended, if it has exited on its own.
    pub fn try_exited(&mut self) -> Option<LocalBrokerError> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(self.exited_error(status)),
            Ok(None) => None,
            Err(source) => Some(LocalBrokerError::Io { path: "kafka process".into(), source }),
        }
    }

    /// Kills the process at once, as a crash would (its log stays on disk).
    pub async fn kill(&mut self) {
        self.lifeline = None;
        let _ = self.child.kill().await;
        let _ = std::fs::remove_file(self.config.data_dir.join(PID_FILE));
    }

    /// Shuts the broker down cleanly (it closes its log), killing it after a deadline.
    pub async fn stop(&mut self) {
        self.lifeline = None;
        if tokio::time::timeout(STOP_DEADLINE, self.child.wait()).await.is_err() {
            tracing::warn!(deadline = ?STOP_DEADLINE, "the Kafka broker did not stop in time; killing it");
        }
        self.kill().await;
    }

    /// Starts the process again on the same port and log, after [`kill`](Self::kill) or
    /// [`stop`](Self::stop).
    pub async fn restart(&mut self, ready_timeout: Duration) -> Result<(), LocalBrokerError> {
        self.kill().await;
        self.config.ready_timeout = ready_timeout;
        let started = Instant::now();
        let (child, lifeline) = spawn(&self.config)?;
        self.child = child;
        self.lifeline = Some(lifeline);
        self.wait_ready().await?;
        self.started_in = started.elapsed();
        Ok(())
    }

    fn exited_error(&self, status: std::process::ExitStatus) -> LocalBrokerError {
        LocalBrokerError::Exited { status, log_path: self.log_path().display().to_string(), log: self.log_tail() }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    async fn wait_ready(&mut self) -> Result<(), LocalBrokerError> {
        let timeout = self.config.ready_timeout;
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(self.exited_error(status));
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", self.config.port)).await.is_ok()
                && check_connection(&KafkaSettings::for_bootstrap(self.bootstrap_servers()), ANSWER_WITHIN)
                    .await
                    .is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(LocalBrokerError::NotReady {
                    port: self.config.port,
                    timeout,
                    log_path: self.log_path().display().to_string(),
                    log: self.log_tail(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `server.properties` for one combined broker and controller on loopback.
///
/// Besides the listeners: partitions of Kafka's internal topics kept few (a group's first
/// commit creates `__consumer_offsets`; 50 partitions cost a local broker seconds), the first
/// rebalance not delayed, topics created explicitly only (as the catalog does), the log kept
/// until deleted (it is the source of truth that every consumer can be rebuilt from), and record
/// timestamps taken as the producer set them, however old or new (events carry their own time).
pub fn server_properties(config: &LocalBrokerConfig, controller_port: u16) -> String {
    let port = config.port;
    let log_dir = config.data_dir.join("log");
    let mut advertised = format!("PLAINTEXT://127.0.0.1:{port}");
    let mut protocols = "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT".to_owned();
    for (name, port) in &config.extra_listeners {
        let _ = write!(advertised, ",{name}://127.0.0.1:{port}");
        let _ = write!(protocols, ",{name}:{name}");
    }
    let mut properties: BTreeMap<String, String> = [
        ("process.roles", "broker,controller".to_owned()),
        ("node.id", "1".to_owned()),
        ("listeners", format!("{advertised},CONTROLLER://127.0.0.1:{controller_port}")),
        ("advertised.listeners", advertised),
        ("controller.listener.names", "CONTROLLER".to_owned()),
        ("inter.broker.listener.name", "PLAINTEXT".to_owned()),
        ("listener.security.protocol.map", protocols),
        ("controller.quorum.bootstrap.servers", format!("127.0.0.1:{controller_port}")),
        ("log.dirs", log_dir.display().to_string()),
        ("num.partitions", "1".to_owned()),
        ("auto.create.topics.enable", "false".to_owned()),
        ("offsets.topic.replication.factor", "1".to_owned()),
        ("offsets.topic.num.partitions", "4".to_owned()),
        ("transaction.state.log.replication.factor", "1".to_owned()),
        ("transaction.state.log.min.isr", "1".to_owned()),
        ("transaction.state.log.num.partitions", "4".to_owned()),
        ("share.coordinator.state.topic.replication.factor", "1".to_owned()),
        ("share.coordinator.state.topic.min.isr", "1".to_owned()),
        ("group.initial.rebalance.delay.ms", "0".to_owned()),
        ("log.retention.ms", "-1".to_owned()),
        ("log.message.timestamp.type", "CreateTime".to_owned()),
        ("log.message.timestamp.before.max.ms", i64::MAX.to_string()),
        ("log.message.timestamp.after.max.ms", i64::MAX.to_string()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .collect();
    properties.extend(config.properties.clone());
    let mut text = String::from("# Written by Eventline's local broker at every start; edits are overwritten.\n");
    for (key, value) in &properties {
        let _ = writeln!(text, "{key}={value}");
    }
    text
}

fn log4j_config(log_file: &Path) -> String {
    format!(
        "status = error\n\
         shutdownHook = disable\n\
         appender.file.type = File\n\
         appender.file.name = file\n\
         appender.file.append = true\n\
         appender.file.fileName = {}\n\
         appender.file.layout.type = PatternLayout\n\
         appender.file.layout.pattern = [%d] %p %m (%c)%n\n\
         rootLogger.level = WARN\n\
         rootLogger.appenderRef.file.ref = file\n\
         logger.started.name = kafka.server.KafkaRaftServer\n\
         logger.started.level = INFO\n",
        log_file.display()
    )
}

/// The controller's port for this data directory: the one it was formatted with (the quorum
/// records its voter's endpoint), else a free one, remembered.
fn controller_port(data_dir: &Path) -> Result<u16, LocalBrokerError> {
    let file = data_dir.join(CONTROLLER_PORT_FILE);
    if let Some(port) = std::fs::read_to_string(&file).ok().and_then(|text| text.trim().parse().ok()) {
        return Ok(port);
    }
    let io = |source| LocalBrokerError::Io { path: file.display().to_string(), source };
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(io)?.port();
    std::fs::write(&file, port.to_string()).map_err(io)?;
    Ok(port)
}

fn spawn(config: &LocalBrokerConfig) -> Result<(Child, ChildStdin), LocalBrokerError> {
    let home = kafka_home();
    if !home.join("libs/eventline-local-kafka.jar").is_file() {
        return Err(LocalBrokerError::NotInstalled { home: home.display().to_string() });
    }
    let data_dir = &config.data_dir;
    let write = |name: &str, text: String| {
        let path = data_dir.join(name);
        std::fs::write(&path, text)
            .map_err(|source| LocalBrokerError::Io { path: path.display().to_string(), source })?;
        Ok::<_, LocalBrokerError>(path)
    };
    let log_path = data_dir.join(LOG_FILE);
    let properties = write("server.properties", server_properties(config, controller_port(data_dir)?))?;
    let log4j = write("log4j2.properties", log4j_config(&log_path))?;
    let io_error = |source| LocalBrokerError::Io { path: log_path.display().to_string(), source };
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).map_err(io_error)?;
    let log_err = log.try_clone().map_err(io_error)?;
    let mut format_args = Vec::new();
    for user in &config.scram_users {
        format_args.extend(["--add-scram".to_owned(), user.format_arg()?]);
    }
    let java = java_binary();
    let mut child = Command::new(&java)
        .arg(format!("-Xmx{}", config.heap))
        .args(["-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35"])
        .arg("-Djava.awt.headless=true")
        .arg(format!("-Dlog4j2.configurationFile={}", log4j.display()))
        .arg("-cp")
        .arg(home.join("libs/*"))
        .arg(LAUNCHER_CLASS)
        .arg(&properties)
        .args(&format_args)
        .current_dir(data_dir)
        .env_remove("KAFKA_OPTS")
        .env_remove("KAFKA_HEAP_OPTS")
        .env_remove("JAVA_TOOL_OPTIONS")
        .stdin(Stdio::piped())
        .stdout(log)
        .stderr(log_err)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| LocalBrokerError::JavaMissing { java: java.display().to_string(), source })?;
    let lifeline = child.stdin.take().ok_or_else(|| LocalBrokerError::Io {
        path: "the Kafka broker's standard input".into(),
        source: std::io::Error::other("not piped"),
    })?;
    if let Some(pid) = child.id() {
        let _ = std::fs::write(data_dir.join(PID_FILE), pid.to_string());
    }
    Ok((child, lifeline))
}

/// Stops a broker that an earlier run left on `data_dir` (its parent was killed and it has not
/// finished shutting down), so that this start does not fail on a taken port or a locked log.
async fn stop_stale_broker(data_dir: &Path) {
    let pid_file = data_dir.join(PID_FILE);
    let Some(pid) = std::fs::read_to_string(&pid_file).ok().and_then(|t| t.trim().parse::<u32>().ok()) else {
        return;
    };
    if !is_our_broker(pid, data_dir) {
        let _ = std::fs::remove_file(&pid_file);
        return;
    }
    eprintln!("stopping the Kafka broker (pid {pid}) that an earlier run left on {}", data_dir.display());
    let signal = |name: &str| {
        let _ = std::process::Command::new("kill").args([name, &pid.to_string()]).status();
    };
    signal("-TERM");
    let deadline = Instant::now() + STOP_DEADLINE;
    while is_our_broker(pid, data_dir) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if is_our_broker(pid, data_dir) {
        signal("-KILL");
        while is_our_broker(pid, data_dir) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let _ = std::fs::remove_file(&pid_file);
}

/// Whether `pid` is alive and is the launcher of a broker on `data_dir`.
fn is_our_broker(pid: u32, data_dir: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return false };
    let cmdline = String::from_utf8_lossy(&cmdline);
    let properties = data_dir.join("server.properties");
    cmdline.contains(LAUNCHER_CLASS) && cmdline.contains(&*properties.to_string_lossy())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pinned_version_is_the_one_maven_fetches() {
        let pom = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../kafka/pom.xml"))
            .unwrap_or_else(|e| panic!("kafka/pom.xml: {e}"));
        assert!(
            pom.contains(&format!("<kafka.version>{KAFKA_VERSION}</kafka.version>")),
            "kafka/pom.xml must pin kafka.version {KAFKA_VERSION}"
        );
    }

    #[test]
    fn scram_users_become_storage_tool_arguments() {
        let user = |name: &str, password: &str| ScramUser {
            mechanism: ScramMechanism::Sha512,
            name: name.into(),
            password: password.into(),
        };
        let arg = user("alice", "alice-secret").format_arg().ok();
        assert_eq!(arg.as_deref(), Some("SCRAM-SHA-512=[name=alice,password=alice-secret]"));
        assert!(user("alice", "a,b").format_arg().is_err());
        assert!(user("al]ice", "secret").format_arg().is_err());
        assert!(!format!("{:?}", user("alice", "alice-secret")).contains("alice-secret"));
    }

    #[test]
    fn properties_given_by_the_caller_win_over_the_defaults() {
        let mut config = LocalBrokerConfig::new(19092, Path::new("/data"), Duration::from_secs(1));
        config.properties.insert("num.partitions".into(), "3".into());
        let text = server_properties(&config, 19093);
        assert!(text.contains("\nnum.partitions=3\n"), "{text}");
        assert!(!text.contains("num.partitions=1"), "{text}");
        assert!(text.contains("listeners=PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093\n"), "{text}");
        assert!(text.contains("log.dirs=/data/log\n"), "{text}");
    }

    #[test]
    fn an_extra_listener_is_listened_on_advertised_and_mapped_to_its_protocol() {
        let mut config = LocalBrokerConfig::new(19092, Path::new("/data"), Duration::from_secs(1));
        config.extra_listeners.insert("SASL_SSL".into(), 19094);
        let text = server_properties(&config, 19093);
        assert!(
            text.contains(
                "\nlisteners=PLAINTEXT://127.0.0.1:19092,SASL_SSL://127.0.0.1:19094,CONTROLLER://127.0.0.1:19093\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("\nadvertised.listeners=PLAINTEXT://127.0.0.1:19092,SASL_SSL://127.0.0.1:19094\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "\nlistener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL\n"
            ),
            "{text}"
        );
        assert!(text.contains("\ninter.broker.listener.name=PLAINTEXT\n"), "{text}");
    }
}
