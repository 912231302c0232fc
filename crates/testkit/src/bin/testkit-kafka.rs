//! Starts one Apache Kafka broker for a whole test run (`./dev.sh test` runs it).
//!
//! Prints `bootstrap=HOST:PORT` on the first line of standard output once the broker answers,
//! then the start-up time, and runs until its standard input closes (the script that started it
//! exited); the broker stops with it.

use std::io::Read as _;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let (broker, _dir) = eventline_testkit::start_local_broker(|_| {}).await;
    println!("bootstrap={}", broker.bootstrap_servers());
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
