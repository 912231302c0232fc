//! Load benchmark: HTTP ingest against the raw librdkafka producer, side by side, on loopback.
//!
//! `cargo bench -p eventline-http-ingest --bench ingest_load` starts an Apache Kafka broker, our schema
//! registry and the ingest service in-process, then measures:
//! - batched HTTP ingest throughput (batches of 100 and of 500 from 8 concurrent clients)
//!   against the raw `FutureProducer` (same settings: idempotent, `acks=all`, same linger and
//!   compression) writing the same prepared events to the same topic, all in flight at once,
//!   and, to show what the window costs, with the HTTP clients' window (8 × 100 in flight);
//! - single-event requests at a fixed rate (1,000/s for 10 s, open loop: latency counts from
//!   when a request was due, so a stall is not hidden) against the raw producer sending one
//!   record per tick and awaiting its acknowledgement; the two alternate for the same rounds
//!   and each row shows its round with the median p99.
//!
//! Each row also shows the CPU time per event of this process and of the broker process.
//! Bounded: a fixed number of events per phase, each phase under a deadline. Knobs:
//! `INGEST_BENCH_EVENTS` (20000 per throughput phase), `INGEST_BENCH_SECONDS` (10),
//! `INGEST_BENCH_BATCHES` (`100,500`), `INGEST_BENCH_CLIENTS` (8), `INGEST_BENCH_LINGER_MS`
//! (1, both producers), `INGEST_BENCH_ROUNDS` (3 alternating rounds of every phase; the median is shown).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use eventline_common::catalog::Catalog;
use eventline_common::contracts::Contracts;
use eventline_common::db::{Database, DatabaseSettings};
use eventline_common::envelope::TraceParent;
use eventline_common::events::samples;
use eventline_common::kafka::local_broker::KAFKA_VERSION;
use eventline_common::kafka::producer::EventProducer;
use eventline_common::publish::{prepare, Origin, PreparedEvent, Publisher};
use eventline_common::registry_client::{RegistryClient, SchemaRegistrySettings};
use eventline_http_ingest::{IngestApp, IngestSettings};
use eventline_registry::{RegistryApp, RegistrySettings};
use eventline_testkit::{Broker, SqliteDatabase};
use futures::future::join_all;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// The allocator the service binaries run with, so ingest here runs as it does there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RATE: u64 = 1000;
const PHASE_DEADLINE: Duration = Duration::from_secs(180);

struct Row {
    name: String,
    events: usize,
    seconds: f64,
    latencies: Vec<Duration>,
    /// CPU seconds of this process (client, ingest, librdkafka) and of the broker.
    cpu: (f64, f64),
}

impl Row {
    fn rate(&self) -> f64 {
        self.events as f64 / self.seconds
    }

    fn percentile(&self, p: f64) -> f64 {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len().max(1)) - 1;
        sorted.get(index).map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    }
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn order(i: usize) -> Value {
    let mut order = serde_json::to_value(samples::order_placed(&format!("bench-{i}"))).unwrap();
    order["customer_id"] = json!(format!("cust-{}", i % 97));
    json!({"type": "OrderPlaced", "source": "/bench", "data": order})
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(run());
}

async fn run() {
    let events = env_number("INGEST_BENCH_EVENTS", 20_000);
    let clients = env_number("INGEST_BENCH_CLIENTS", 8);
    let batches: Vec<usize> = std::env::var("INGEST_BENCH_BATCHES")
        .unwrap_or_else(|_| "100,500".to_owned())
        .split(',')
        .filter_map(|b| b.trim().parse().ok())
        .collect();
    assert!(!batches.is_empty(), "INGEST_BENCH_BATCHES lists batch sizes, e.g. 100,500");
    let linger_ms = env_number("INGEST_BENCH_LINGER_MS", 1);
    let rounds = env_number("INGEST_BENCH_ROUNDS", 3).max(1);
    let seconds = env_number("INGEST_BENCH_SECONDS", 10) as u64;
    let broker = Broker::start().await;
    println!("broker: Apache Kafka {KAFKA_VERSION} (its log on disk); linger {linger_ms} ms");
    let registry_db = SqliteDatabase::create();
    let registry_url = start_registry(&registry_db).await;
    let client =
        RegistryClient::new(&SchemaRegistrySettings { url: registry_url, ..SchemaRegistrySettings::default() })
            .unwrap();
    let catalog = Catalog::embedded().unwrap();
    let topics: Vec<(&str, i32)> = catalog.topics().iter().map(|t| (t.name.as_str(), t.partitions)).collect();
    broker.create_topics(&topics).await;
    let contracts = Arc::new(Contracts::register(catalog, &client).await.unwrap());

    let mut settings = IngestSettings::default();
    settings.rate_limit.enabled = false;
    settings.linger = Duration::from_millis(linger_ms as u64);
    let kafka = broker.kafka_settings();
    let producer_settings = settings.producer_settings();
    let publisher = Publisher::new(EventProducer::new(&kafka, &producer_settings).unwrap(), contracts.clone());
    let ingest_db_file = SqliteDatabase::create();
    let db =
        Database::connect(&DatabaseSettings { url: ingest_db_file.url().to_owned(), ..DatabaseSettings::default() })
            .await
            .unwrap();
    let app = IngestApp::build(settings, &kafka, publisher, db, client, prometheus::Registry::new()).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    tokio::spawn(app.run(listener, stop.clone()));

    let mut raw_config = kafka.client_config();
    raw_config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", &producer_settings.compression)
        .set("linger.ms", producer_settings.linger.as_millis().to_string())
        .set("message.timeout.ms", producer_settings.delivery_timeout.as_millis().to_string());
    let raw: FutureProducer = raw_config.create().unwrap();
    // The same records ingest writes: ingest starts a trace per request and puts its
    // `traceparent` in the headers, so the raw producer's events carry one too.
    let origin =
        || Origin { source: "/bench".into(), traceparent: Some(TraceParent::new_root()), correlation_id: None };
    let prepared: Vec<PreparedEvent> =
        (0..events).map(|i| prepare(&contracts, &order(i), &origin()).unwrap()).collect();
    let http = reqwest::Client::builder().pool_max_idle_per_host(256).build().unwrap();

    println!("warming up …");
    raw_all(&raw, &prepared[..1000.min(events)]).await;
    http_batched(&http, &base, 1000.min(events), clients, batches[0]).await;

    let pid = broker.pid();
    // Throughput: the phases alternate for several rounds; each row shows its median round.
    let mut http_rounds: Vec<Vec<Row>> = batches.iter().map(|_| Vec::new()).collect();
    let (mut raw_rounds, mut window_rounds) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        for (series, &batch) in http_rounds.iter_mut().zip(&batches) {
            series.push(deadline(pid, http_batched(&http, &base, events, clients, batch)).await);
        }
        raw_rounds.push(deadline(pid, raw_all(&raw, &prepared)).await);
        window_rounds.push(deadline(pid, raw_windowed(&raw, &prepared, clients * batches[0])).await);
    }
    let mut rows: Vec<Row> = http_rounds.into_iter().map(median).collect();
    rows.push(median(raw_rounds));
    rows.push(median(window_rounds));
    // Latency: the two single-event phases alternate for as many rounds; each row shows the
    // round with the median p99, so one stall of the machine does not decide the verdict.
    let ticks = (RATE * seconds) as usize;
    let (mut http_single_rounds, mut raw_single_rounds) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        http_single_rounds.push(deadline(pid, http_single_at_rate(&http, &base, ticks)).await);
        raw_single_rounds.push(deadline(pid, raw_single_at_rate(&raw, &prepared, ticks)).await);
    }
    rows.push(median_p99(http_single_rounds));
    rows.push(median_p99(raw_single_rounds));
    stop.cancel();

    println!();
    println!(
        "{:<48} {:>7} {:>8} {:>9} {:>8} {:>8} {:>10} {:>12}",
        "", "events", "seconds", "events/s", "p50 ms", "p99 ms", "CPU µs/ev", "broker µs/ev"
    );
    for row in &rows {
        let per_event = |cpu: f64| cpu * 1e6 / row.events as f64;
        println!(
            "{:<48} {:>7} {:>8.2} {:>9.0} {:>8.2} {:>8.2} {:>10.0} {:>12.0}",
            row.name,
            row.events,
            row.seconds,
            row.rate(),
            row.percentile(0.50),
            row.percentile(0.99),
            per_event(row.cpu.0),
            per_event(row.cpu.1)
        );
    }
    println!("(CPU µs/ev: this process — HTTP client, ingest, librdkafka; broker µs/ev: the Kafka process)");
    let n = batches.len();
    let (raw_all_row, window_row, single, raw_single) = (&rows[n], &rows[n + 1], &rows[n + 2], &rows[n + 3]);
    println!();
    for row in &rows[..n] {
        println!("{} / raw producer: {:.0}% (target >= 90%)", row.name, row.rate() / raw_all_row.rate() * 100.0);
    }
    println!("{} / {}: {:.0}%", rows[0].name, window_row.name, rows[0].rate() / window_row.rate() * 100.0);
    let (http_p99, raw_p99) = (single.percentile(0.99), raw_single.percentile(0.99));
    println!(
        "single-event HTTP p99 at {RATE}/s: {http_p99:.2} ms (target < 10 ms); raw producer: {raw_p99:.2} ms; \
         HTTP - raw: {:.2} ms (target <= 2 ms)",
        http_p99 - raw_p99
    );
}

/// The round with the median throughput, its name saying how many rounds there were.
fn median(rounds: Vec<Row>) -> Row {
    median_by(rounds, "events/s", 0, Row::rate)
}

/// The round with the median p99 latency.
fn median_p99(rounds: Vec<Row>) -> Row {
    median_by(rounds, "p99 ms", 2, |row| row.percentile(0.99))
}

fn median_by(mut rounds: Vec<Row>, what: &str, decimals: usize, key: impl Fn(&Row) -> f64) -> Row {
    rounds.sort_by(|a, b| key(a).total_cmp(&key(b)));
    let values: Vec<String> = rounds.iter().map(|r| format!("{:.*}", decimals, key(r))).collect();
    let mut row = rounds.swap_remove(rounds.len() / 2);
    println!("{}: {what} per round {}", row.name, values.join(", "));
    row.name = format!("{} [median]", row.name);
    row
}

async fn deadline(broker_pid: Option<u32>, phase: impl std::future::Future<Output = Row>) -> Row {
    let before = (cpu_seconds("self"), broker_pid.map_or(0.0, |pid| cpu_seconds(&pid.to_string())));
    let mut row = tokio::time::timeout(PHASE_DEADLINE, phase).await.expect("a benchmark phase overran its deadline");
    let after = (cpu_seconds("self"), broker_pid.map_or(0.0, |pid| cpu_seconds(&pid.to_string())));
    row.cpu = (after.0 - before.0, after.1 - before.1);
    row
}

/// User plus system CPU time of a process, from `/proc/<pid>/stat` (clock ticks of 10 ms).
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

async fn start_registry(file: &SqliteDatabase) -> String {
    let db = Database::connect(&DatabaseSettings { url: file.url().to_owned(), ..DatabaseSettings::default() })
        .await
        .unwrap();
    let app = RegistryApp::build(RegistrySettings::default(), db, prometheus::Registry::new()).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(app.run(listener, CancellationToken::new()));
    url
}

/// `count` events as batches of `batch` from `clients` concurrent clients.
async fn http_batched(http: &reqwest::Client, base: &str, count: usize, clients: usize, batch: usize) -> Row {
    let bodies: Vec<Vec<u8>> = (0..count)
        .collect::<Vec<_>>()
        .chunks(batch)
        .map(|chunk| serde_json::to_vec(&chunk.iter().map(|&i| order(i)).collect::<Vec<_>>()).unwrap())
        .collect();
    let bodies = Arc::new(bodies);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let url = format!("{base}/v1/events:batch");
    let started = Instant::now();
    let tasks = (0..clients).map(|_| {
        let (http, url, bodies, next) = (http.clone(), url.clone(), bodies.clone(), next.clone());
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(body) = bodies.get(i) else { return latencies };
                let sent = Instant::now();
                let response =
                    http.post(&url).header("content-type", "application/json").body(body.clone()).send().await.unwrap();
                assert_eq!(response.status(), 200, "{}", response.text().await.unwrap_or_default());
                response.bytes().await.unwrap();
                latencies.push(sent.elapsed());
            }
        })
    });
    let latencies: Vec<Duration> = join_all(tasks).await.into_iter().flat_map(Result::unwrap).collect();
    Row {
        name: format!("HTTP batched ({batch}/request, {clients} clients)"),
        events: count,
        seconds: started.elapsed().as_secs_f64(),
        latencies,
        cpu: (0.0, 0.0),
    }
}

/// Every prepared event handed to the raw producer at once; latency from enqueue to ack.
async fn raw_all(raw: &FutureProducer, events: &[PreparedEvent]) -> Row {
    let started = Instant::now();
    let mut pending = Vec::with_capacity(events.len());
    for event in events {
        let sent = Instant::now();
        pending.push(async move { (raw_send(raw, event).await, sent.elapsed()) });
    }
    let latencies: Vec<Duration> = join_all(pending).await.into_iter().map(|(_, took)| took).collect();
    Row {
        name: "raw producer (all in flight)".into(),
        events: events.len(),
        seconds: started.elapsed().as_secs_f64(),
        latencies,
        cpu: (0.0, 0.0),
    }
}

/// The raw producer with at most `window` events in flight: the HTTP clients' window.
async fn raw_windowed(raw: &FutureProducer, events: &[PreparedEvent], window: usize) -> Row {
    use futures::StreamExt as _;
    let started = Instant::now();
    let latencies: Vec<Duration> = futures::stream::iter(events)
        .map(|event| async move {
            let sent = Instant::now();
            raw_send(raw, event).await;
            sent.elapsed()
        })
        .buffer_unordered(window)
        .collect()
        .await;
    let name = format!("raw producer ({window} in flight)");
    Row { name, events: events.len(), seconds: started.elapsed().as_secs_f64(), latencies, cpu: (0.0, 0.0) }
}

async fn raw_send(raw: &FutureProducer, event: &PreparedEvent) {
    let record = FutureRecord::to(&event.topic)
        .key(&event.key)
        .payload(&event.value)
        .headers(event.envelope.to_headers())
        .timestamp(event.envelope.time.timestamp_millis());
    raw.send(record, Timeout::After(Duration::from_secs(30))).await.map_err(|(e, _)| e).unwrap();
}

/// One request per tick at [`RATE`]/s; latency from when the request was due.
async fn http_single_at_rate(http: &reqwest::Client, base: &str, ticks: usize) -> Row {
    let bodies: Vec<Vec<u8>> = (0..ticks).map(|i| serde_json::to_vec(&order(1_000_000 + i)).unwrap()).collect();
    let url = format!("{base}/v1/events");
    at_rate("HTTP single event @ 1000/s", ticks, move |i| {
        let (http, url, body) = (http.clone(), url.clone(), bodies[i].clone());
        async move {
            let response = http.post(&url).header("content-type", "application/json").body(body).send().await.unwrap();
            assert_eq!(response.status(), 201);
            response.bytes().await.unwrap();
        }
    })
    .await
}

async fn raw_single_at_rate(raw: &FutureProducer, events: &[PreparedEvent], ticks: usize) -> Row {
    let events: Vec<PreparedEvent> = (0..ticks).map(|i| events[i % events.len()].clone()).collect();
    let events = Arc::new(events);
    at_rate("raw producer, one event @ 1000/s", ticks, move |i| {
        let (raw, events) = (raw.clone(), events.clone());
        async move { raw_send(&raw, &events[i]).await }
    })
    .await
}

async fn at_rate<F, Fut>(name: &str, ticks: usize, mut start: F) -> Row
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let period = Duration::from_micros(1_000_000 / RATE);
    let started = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(ticks);
    for i in 0..ticks {
        let due = started + period * i as u32;
        tokio::time::sleep_until(due).await;
        let work = start(i);
        tasks.push(tokio::spawn(async move {
            work.await;
            due.elapsed()
        }));
    }
    let latencies: Vec<Duration> = join_all(tasks).await.into_iter().map(Result::unwrap).collect();
    Row { name: name.into(), events: ticks, seconds: started.elapsed().as_secs_f64(), latencies, cpu: (0.0, 0.0) }
}
