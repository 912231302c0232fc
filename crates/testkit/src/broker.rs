use std::time::Duration;

use eventline_common::kafka::admin::{ensure_topics, TopicRequest};
use eventline_common::kafka::local_broker::{LocalBroker, SQLITE_STORAGE};
use eventline_common::kafka::KafkaSettings;

const READY: Duration = Duration::from_secs(30);

/// A Tansu broker for one test: its own port, its own SQLite log, killed on drop.
pub struct Broker {
    inner: LocalBroker,
    _dir: tempfile::TempDir,
}

impl Broker {
    /// Starts a broker and waits until it answers metadata requests.
    pub async fn start() -> Self {
        Self::start_with_storage(SQLITE_STORAGE).await
    }

    /// A broker with another Tansu `--storage-engine` (e.g. `memory://tansu/`).
    pub async fn start_with_storage(storage: &str) -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("no temp dir: {e}"));
        let inner = LocalBroker::start_with_storage(crate::free_port(), dir.path(), storage, READY)
            .await
            .unwrap_or_else(|e| panic!("cannot start the Tansu broker: {e}"));
        Self { inner, _dir: dir }
    }

    pub fn bootstrap_servers(&self) -> String {
        self.inner.bootstrap_servers()
    }

    pub fn kafka_settings(&self) -> KafkaSettings {
        KafkaSettings::for_bootstrap(self.bootstrap_servers())
    }

    /// Kills the broker; its log stays for [`resume`](Self::resume).
    pub async fn stop(&mut self) {
        self.inner.kill().await;
    }

    /// Starts the broker again on the same port with the same log.
    pub async fn resume(&mut self) {
        self.inner.restart(READY).await.unwrap_or_else(|e| panic!("Tansu did not come back: {e}"));
    }

    /// Creates topics with the given partition counts.
    pub async fn create_topics(&self, topics: &[(&str, i32)]) {
        let requests: Vec<TopicRequest> = topics
            .iter()
            .map(|(name, partitions)| TopicRequest { name: (*name).to_owned(), partitions: *partitions, replication: 1 })
            .collect();
        ensure_topics(&self.kafka_settings(), &requests)
            .await
            .unwrap_or_else(|e| panic!("cannot create topics {topics:?}: {e}"));
    }
}
