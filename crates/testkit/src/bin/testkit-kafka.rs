//! Starts one Apache Kafka broker for a whole test run (`./dev.sh test` runs it).
//!
//! Prints `bootstrap=HOST:PORT` on the first line of standard output once the broker answers,
//! then its SASL_SSL listener (`secure_bootstrap=HOST:PORT`) and the directory of the
//! certificates it was made with (`certificates=DIR`), then the start-up time, and runs until
//! its standard input closes (the script that started it exited); the broker stops with it.

use std::io::Read as _;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let (broker, _dir, secure) = eventline_testkit::start_shared_broker().await;
    println!("bootstrap={}", broker.bootstrap_servers());
    println!("secure_bootstrap={}", secure.bootstrap_servers());
    println!("certificates={}", secure.certificates_dir().display());
    println!(
        "Apache Kafka {} started in {:.1?} (log: {})",
        eventline_common::kafka::local_broker::KAFKA_VERSION,
        broker.started_in(),
        broker.log_path().display()
    );
    tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
    })
    .await
    .ok();
}
