//! A relay killed mid-batch loses nothing and duplicates only with the same event id; a relay
//! told to stop finishes its batch first.

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::time::{Duration, Instant};

use eventline_common::kafka::KafkaSettings;
use eventline_outbox_relay::metrics::LAG_ROWS;
use eventline_outbox_relay::OutboxRelaySettings;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::process::{Child, Command};

use crate::support::{ids_per_aggregate, ids_per_key, metric, read_topic, Harness};

const TABLE: &str = "eventline_outbox";
const ROWS: i64 = 4_000;

/// The `eventline-outbox-relay` binary over the harness, configured through the environment.
fn spawn_relay(harness: &Harness) -> Child {
    Command::new(env!("CARGO_BIN_EXE_eventline-outbox-relay"))
        .env_remove("EVENTLINE_CONFIG")
        .env("EVENTLINE_KAFKA__BOOTSTRAP_SERVERS", harness.stack.broker.bootstrap_servers())
        .env("EVENTLINE_SCHEMA_REGISTRY__URL", &harness.stack.registry.url)
        .env("EVENTLINE_OUTBOX_RELAY__DATABASE_URL", harness.db.url())
        .env("EVENTLINE_OUTBOX_RELAY__BATCH_SIZE", "100")
        .env("EVENTLINE_OUTBOX_RELAY__POLL_INTERVAL", "200ms")
        .env("EVENTLINE_OUTBOX_RELAY__LISTEN", "127.0.0.1:0")
        .env("EVENTLINE_TELEMETRY__LEVEL", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start the relay binary: {e}"))
}

/// Polls (every 10 ms) until at least `rows` rows are marked published.
async fn wait_published(harness: &Harness, rows: i64, deadline: Duration) -> i64 {
    let started = Instant::now();
    loop {
        let (published, _, _) = harness.counts(TABLE).await;
        if published >= rows {
            return published;
        }
        assert!(started.elapsed() < deadline, "only {published} of {rows} rows published after {deadline:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Makes every UPDATE of the outbox take a second: the relay then spends most of each batch
/// between the broker's acknowledgement and its commit, where a crash hurts most.
const SLOW_MARKS: &str = "
    CREATE FUNCTION slow_marks() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN PERFORM pg_sleep(1); RETURN NULL; END $$;
    CREATE TRIGGER slow_marks BEFORE UPDATE ON eventline_outbox
        FOR EACH STATEMENT EXECUTE FUNCTION slow_marks();";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_mid_batch_resumes_without_loss_and_duplicates_keep_their_id() {
    let harness = Harness::with_outbox().await;
    harness.insert_shipments(TABLE, ROWS, 40).await;
    sqlx::raw_sql(SLOW_MARKS).execute(&harness.pool).await.unwrap();
    let topic = TopicCounter::new(&harness.kafka(), "orders");

    // Kill (SIGKILL: no drain, no flush) once some batches are committed and the current one is
    // on the topic but not yet marked. Should the batch commit between seeing that and the kill,
    // try again.
    let (marked, on_topic) = {
        let mut tries = 0;
        loop {
            tries += 1;
            let mut relay = spawn_relay(&harness);
            let started = Instant::now();
            loop {
                let (published, _, _) = harness.counts(TABLE).await;
                if published >= 200 && topic.count() > published {
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "no batch in flight after 60s ({published} published)"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            relay.kill().await.unwrap();
            let (marked, _, _) = harness.counts(TABLE).await;
            let on_topic = topic.count();
            if on_topic > marked {
                break (marked, on_topic);
            }
            assert!(tries < 3, "could not kill the relay between publishing and marking in {tries} tries");
        }
    };
    assert!(marked < ROWS);
    eprintln!("killed with {marked} rows marked and {on_topic} events on the topic");

    sqlx::raw_sql("DROP TRIGGER slow_marks ON eventline_outbox").execute(&harness.pool).await.unwrap();
    let mut second = spawn_relay(&harness);
    harness.settled(TABLE, Duration::from_secs(120)).await;
    let pid = second.id().unwrap().to_string();
    let signalled = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(signalled.success());
    let exit = tokio::time::timeout(Duration::from_secs(30), second.wait()).await.unwrap().unwrap();
    assert!(exit.success(), "SIGTERM drains and exits cleanly: {exit}");

    let rows = harness.rows(TABLE).await;
    assert!(rows.iter().all(|r| r.published), "every row published after the restart");
    let messages = read_topic(&harness.kafka(), "orders").await;
    let ids: HashSet<String> = messages.iter().map(|m| m.envelope.id.to_string()).collect();
    assert_eq!(ids, rows.iter().map(|r| r.event_id.clone()).collect::<HashSet<_>>(), "every event id on the topic");
    let republished = on_topic - marked;
    assert!(messages.len() as i64 >= ROWS + republished, "the unmarked rows were published again");
    // Every row's data is unique, so one value under two ids would be an event published twice
    // as two different events; one id with two values would be two events sharing an id.
    let mut ids_of_value: HashMap<&[u8], HashSet<String>> = HashMap::new();
    let mut value_of_id: HashMap<String, (&str, &[u8])> = HashMap::new();
    for m in &messages {
        ids_of_value.entry(&m.value).or_default().insert(m.envelope.id.to_string());
        let first_copy = value_of_id.entry(m.envelope.id.to_string()).or_insert((&m.key, &m.value));
        assert_eq!(*first_copy, (m.key.as_str(), m.value.as_slice()), "a duplicate differs from its original");
    }
    assert!(ids_of_value.values().all(|ids| ids.len() == 1), "an event was published twice with different ids");
    assert_eq!(ids_per_key(&messages), ids_per_aggregate(&rows), "each aggregate in row order");
    eprintln!("{} events on the topic for {} rows", messages.len(), rows.len());
}

/// How many messages a topic holds (the sum of its partitions' watermark spans).
struct TopicCounter {
    consumer: BaseConsumer,
    topic: String,
    partitions: Vec<i32>,
}

impl TopicCounter {
    fn new(kafka: &KafkaSettings, topic: &str) -> Self {
        let consumer: BaseConsumer = kafka.client_config().create().unwrap();
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
        let partitions = metadata.topics()[0].partitions().iter().map(|p| p.id()).collect();
        Self { consumer, topic: topic.to_owned(), partitions }
    }

    fn count(&self) -> i64 {
        self.partitions
            .iter()
            .map(|&p| {
                let (low, high) = self.consumer.fetch_watermarks(&self.topic, p, Duration::from_secs(10)).unwrap();
                high - low
            })
            .sum()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_relay_finishes_its_batch_in_flight() {
    let harness = Harness::with_outbox().await;
    harness.insert_shipments(TABLE, 2_000, 20).await;
    let relay = harness.start_relay(OutboxRelaySettings { batch_size: 200, ..harness.settings() }).await;
    wait_published(&harness, 200, Duration::from_secs(60)).await;
    let metrics = relay.stop().await;

    let marked: HashSet<String> =
        harness.rows(TABLE).await.into_iter().filter(|r| r.published).map(|r| r.event_id).collect();
    let messages = read_topic(&harness.kafka(), "orders").await;
    let on_topic: HashSet<String> = messages.iter().map(|m| m.envelope.id.to_string()).collect();
    assert_eq!(messages.len(), on_topic.len());
    assert!(marked.len() < 2_000, "the relay finished before it was stopped; the test needs more rows");
    assert_eq!(on_topic, marked, "everything published was marked before the relay stopped");
    let lag = metric(&metrics, LAG_ROWS, &[]);
    assert!(lag > 0.0 && lag <= 1_800.0, "the lag gauge counted the rows still pending: {lag}");
}
