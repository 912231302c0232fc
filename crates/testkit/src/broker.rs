//! Apache Kafka for tests: one broker shared by every test of a run, or one of a test's own.
//!
//! The shared broker is, in this order: the one at `$TESTKIT_KAFKA_BOOTSTRAP` (`./dev.sh test`
//! starts one for the whole run with the `testkit-kafka` binary), else one started on first use
//! by this test process and kept until it exits. A test that keeps to topics, groups and
//! subjects of its own ([`crate::unique`]) takes [`Broker::shared`]. A test that stops, kills or
//! restarts the broker, or uses the catalog's topics (whose names are fixed, so other tests
//! would write to them too), takes a broker of its own, [`Broker::start`].
//!
//! [`Broker::shared_secure`] and [`Broker::start_secure`] are the same through a SASL_SSL
//! listener ([`crate::secure`]); every client made from such a [`Broker`] goes through it. The
//! shared broker has that listener too: `$TESTKIT_KAFKA_SECURE_BOOTSTRAP` with the certificates
//! in `$TESTKIT_KAFKA_CERTIFICATES`, or this process's own.

use std::sync::OnceLock;
use std::time::Duration;

use eventline_common::kafka::admin::{ensure_topics, TopicRequest};
use eventline_common::kafka::local_broker::{LocalBroker, LocalBrokerConfig, KAFKA_VERSION};
use eventline_common::kafka::KafkaSettings;

use crate::secure::{SaslMechanism, SecureListener};

const READY: Duration = Duration::from_secs(60);
/// The environment variable naming a running broker for every test to share.
pub const SHARED_BOOTSTRAP_ENV: &str = "TESTKIT_KAFKA_BOOTSTRAP";
/// The shared broker's SASL_SSL listener, and the directory of the certificates it was made with.
pub const SHARED_SECURE_BOOTSTRAP_ENV: &str = "TESTKIT_KAFKA_SECURE_BOOTSTRAP";
pub const SHARED_CERTIFICATES_ENV: &str = "TESTKIT_KAFKA_CERTIFICATES";

/// A Kafka broker for a test: the shared one, or one of its own (killed on drop).
pub struct Broker {
    bootstrap: String,
    own: Option<(LocalBroker, tempfile::TempDir)>,
    secure: Option<SecureListener>,
}

impl Broker {
    /// The broker shared by the tests of this run (see the module docs).
    pub fn shared() -> Self {
        Self { bootstrap: shared_bootstrap(), own: None, secure: None }
    }

    /// The shared broker's SASL_SSL listener (see the module docs).
    pub fn shared_secure() -> Self {
        let from_run = std::env::var(SHARED_SECURE_BOOTSTRAP_ENV).ok().zip(std::env::var_os(SHARED_CERTIFICATES_ENV));
        let (bootstrap, secure) = match (std::env::var(SHARED_BOOTSTRAP_ENV), from_run) {
            (Ok(bootstrap), Some((secure, certificates))) => {
                (bootstrap, SecureListener::existing(secure, std::path::PathBuf::from(certificates)))
            }
            _ => process_broker().clone(),
        };
        Self { bootstrap, own: None, secure: Some(secure) }
    }

    /// A broker of this test's own with a SASL_SSL listener.
    pub async fn start_secure() -> Self {
        let listener = SecureListener::new();
        let mut broker = Self::start_with(|config| listener.configure(config)).await;
        broker.secure = Some(listener);
        broker
    }

    /// A broker of this test's own: its own port and log, killed when dropped.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A broker of this test's own, its configuration changed by `configure` first (for
    /// example with another listener).
    pub async fn start_with(configure: impl FnOnce(&mut LocalBrokerConfig)) -> Self {
        let (broker, dir) = start_local_broker(configure).await;
        Self { bootstrap: broker.bootstrap_servers(), own: Some((broker, dir)), secure: None }
    }

    /// Where clients connect: the SASL_SSL listener on a secure broker.
    pub fn bootstrap_servers(&self) -> String {
        match &self.secure {
            Some(secure) => secure.bootstrap_servers(),
            None => self.bootstrap.clone(),
        }
    }

    /// The SASL_SSL listener, on a broker started with one.
    pub fn secure(&self) -> Option<&SecureListener> {
        self.secure.as_ref()
    }

    /// The broker process's id, for a broker of the test's own (benchmarks read its CPU time).
    pub fn pid(&self) -> Option<u32> {
        self.own.as_ref().and_then(|(broker, _)| broker.pid())
    }

    /// Client settings: on a secure broker, its SASL_SSL listener with SCRAM-SHA-256.
    pub fn kafka_settings(&self) -> KafkaSettings {
        match &self.secure {
            Some(secure) => secure.kafka_settings(SaslMechanism::ScramSha256),
            None => KafkaSettings::for_bootstrap(self.bootstrap_servers()),
        }
    }

    /// Kills the broker (as a crash would); its log stays for [`resume`](Self::resume).
    pub async fn stop(&mut self) {
        self.own_broker("stop").kill().await;
    }

    /// Starts the broker again on the same port with the same log.
    pub async fn resume(&mut self) {
        let broker = self.own_broker("resume");
        broker.restart(READY).await.unwrap_or_else(|e| panic!("Kafka did not come back: {e}"));
        eprintln!(
            "Apache Kafka {KAFKA_VERSION} restarted on {} in {:.1?}",
            broker.bootstrap_servers(),
            broker.started_in()
        );
    }

    /// Creates topics with the given partition counts.
    pub async fn create_topics(&self, topics: &[(&str, i32)]) {
        let requests: Vec<TopicRequest> = topics
            .iter()
            .map(|(name, partitions)| TopicRequest {
                name: (*name).to_owned(),
                partitions: *partitions,
                replication: 1,
            })
            .collect();
        ensure_topics(&self.kafka_settings(), &requests)
            .await
            .unwrap_or_else(|e| panic!("cannot create topics {topics:?}: {e}"));
    }

    fn own_broker(&mut self, what: &str) -> &mut LocalBroker {
        match &mut self.own {
            Some((broker, _)) => broker,
            None => panic!("cannot {what} the shared broker: take a broker of the test's own with Broker::start()"),
        }
    }
}

/// Starts a broker on a free port in a temp dir and prints how long it took.
pub async fn start_local_broker(configure: impl FnOnce(&mut LocalBrokerConfig)) -> (LocalBroker, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("no temp dir: {e}"));
    let mut config = LocalBrokerConfig::new(crate::free_port(), dir.path(), READY);
    configure(&mut config);
    let broker =
        LocalBroker::start_with(config).await.unwrap_or_else(|e| panic!("cannot start the Apache Kafka broker: {e}"));
    eprintln!("Apache Kafka {KAFKA_VERSION} ready on {} in {:.1?}", broker.bootstrap_servers(), broker.started_in());
    (broker, dir)
}

/// A broker to share between the tests of a run or of a process: PLAINTEXT and a SASL_SSL
/// listener. Its log directory, and the listener's certificates, stay while the values live.
pub async fn start_shared_broker() -> (LocalBroker, tempfile::TempDir, SecureListener) {
    let secure = SecureListener::new();
    let (broker, dir) = start_local_broker(|config| secure.configure(config)).await;
    (broker, dir, secure)
}

/// `$TESTKIT_KAFKA_BOOTSTRAP`, else this process's own shared broker.
fn shared_bootstrap() -> String {
    match std::env::var(SHARED_BOOTSTRAP_ENV) {
        Ok(bootstrap) => bootstrap,
        Err(_) => process_broker().0.clone(),
    }
}

/// This process's shared broker, started on first use on a thread (and runtime) of its own, so
/// that it outlives every test's runtime, and kept until the process exits: its PLAINTEXT
/// address and its SASL_SSL listener.
fn process_broker() -> &'static (String, SecureListener) {
    static SHARED: OnceLock<(String, SecureListener)> = OnceLock::new();
    SHARED.get_or_init(|| {
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("shared-kafka".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap_or_else(|e| panic!("no runtime for the shared broker: {e}"));
                runtime.block_on(async move {
                    let (broker, _dir, secure) = start_shared_broker().await;
                    let _ = sender.send((broker.bootstrap_servers(), secure));
                    // Held until the process exits; the broker then sees its pipe close.
                    std::future::pending::<()>().await;
                });
            })
            .unwrap_or_else(|e| panic!("cannot start the shared broker's thread: {e}"));
        receiver.recv().unwrap_or_else(|_| panic!("the shared Kafka broker did not start (see above)"))
    })
}
