//! Apache Kafka for tests: one broker shared by every test of a run, or one of a test's own.
//!
//! The shared broker is, in this order: the one at `$TESTKIT_KAFKA_BOOTSTRAP` (`./dev.sh test`
//! starts one for the whole run with the `testkit-kafka` binary), else one started on first use
//! by this test process and kept until it exits. A test that keeps to topics, groups and
//! subjects of its own ([`crate::unique`]) takes [`Broker::shared`]. A test that stops, kills or
//! restarts the broker, or uses the catalog's topics (whose names are fixed, so other tests
//! would write to them too), takes a broker of its own, [`Broker::start`].
//!
//! [`Broker::start_secure`] and [`Broker::shared_secure`] are the same with a SASL_SSL listener
//! ([`crate::secure`]); every client made from such a [`Broker`] goes through it.

use std::sync::OnceLock;
use std::time::Duration;

use eventline_common::kafka::admin::{ensure_topics, TopicRequest};
use eventline_common::kafka::local_broker::{LocalBroker, LocalBrokerConfig, KAFKA_VERSION};
use eventline_common::kafka::KafkaSettings;

use crate::secure::{SaslMechanism, SecureListener};

const READY: Duration = Duration::from_secs(60);
/// The environment variable naming a running broker for every test to share.
pub const SHARED_BOOTSTRAP_ENV: &str = "TESTKIT_KAFKA_BOOTSTRAP";

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

    /// A broker with a SASL_SSL listener shared by the tests of this process (started on first
    /// use, kept until the process exits).
    pub fn shared_secure() -> Self {
        static SHARED: OnceLock<(String, SecureListener)> = OnceLock::new();
        let (bootstrap, listener) = SHARED.get_or_init(|| {
            let listener = SecureListener::new();
            let configure = listener.clone();
            (start_kept("shared-secure-kafka", move |config| configure.configure(config)), listener)
        });
        Self { bootstrap: bootstrap.clone(), own: None, secure: Some(listener.clone()) }
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

/// `$TESTKIT_KAFKA_BOOTSTRAP`, else this process's own shared broker, started on first use.
fn shared_bootstrap() -> String {
    if let Ok(bootstrap) = std::env::var(SHARED_BOOTSTRAP_ENV) {
        return bootstrap;
    }
    static SHARED: OnceLock<String> = OnceLock::new();
    SHARED.get_or_init(|| start_kept("shared-kafka", |_| {})).clone()
}

/// Starts a broker on a thread (and runtime) of its own, so that it outlives every test's
/// runtime, and keeps it until the process exits; returns its PLAINTEXT address.
fn start_kept(name: &str, configure: impl FnOnce(&mut LocalBrokerConfig) + Send + 'static) -> String {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap_or_else(|e| panic!("no runtime for the shared broker: {e}"));
            runtime.block_on(async move {
                let (broker, _dir) = start_local_broker(configure).await;
                let _ = sender.send(broker.bootstrap_servers());
                // Held until the process exits; the broker then sees its pipe close.
                std::future::pending::<()>().await;
            });
        })
        .unwrap_or_else(|e| panic!("cannot start the shared broker's thread: {e}"));
    receiver.recv().unwrap_or_else(|_| panic!("the shared Kafka broker did not start (see above)"))
}
