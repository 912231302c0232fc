//! The `[up]` section: how `eventline up` runs the system on one machine.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpSettings {
    /// Where the local broker keeps its log (and, by default, the SQLite database lives).
    pub data_dir: PathBuf,
    /// Start a local Apache Kafka broker on the port of `kafka.bootstrap_servers`; `false` uses the
    /// brokers configured there as they are.
    pub start_broker: bool,
    #[serde(with = "humantime_serde")]
    pub broker_ready_timeout: Duration,
    /// How long shutdown may take to drain in-flight work before tasks are aborted.
    #[serde(with = "humantime_serde")]
    pub drain_deadline: Duration,
}

impl Default for UpSettings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(".eventline"),
            start_broker: true,
            broker_ready_timeout: Duration::from_secs(30),
            drain_deadline: Duration::from_secs(15),
        }
    }
}
