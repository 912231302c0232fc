//! Catch-up and replay benchmark: the projector reading a backlog of events, side by side in the
//! same run with a raw librdkafka consumer (no processing) and with plain batched SQL upserts of
//! the same rows into the same kind of database.
//!
//! `cargo bench -p eventline-projector --bench catchup` starts an Apache Kafka broker and our schema
//! registry, writes a backlog of order stories (a customer registers; orders are placed, paid
//! and shipped) to the catalog's topics, and then measures, one after the other on the same
//! broker and the same partitions:
//! 1. **raw consumer**: librdkafka `BaseConsumer` assigned every partition from the beginning,
//!    counting records until each partition's end: the ceiling for anything that reads the log;
//! 2. **SQL baseline**: the same raw consumer, decoding every event and folding it in memory
//!    (the projector's own pure fold), writing the touched rows of each batch with multi-row
//!    `INSERT .. ON CONFLICT DO UPDATE` statements and the partition offsets in one transaction
//!    per batch: what a hand-written batch job would do;
//! 3. **projector catch-up**: the real `eventline-projector` process (its consumer runtime,
//!    registry lookups, dedupe by event id and transactional offsets) on a fresh database,
//!    from start until its stored offsets reach every partition's end; its peak RSS (`VmHWM`);
//! 4. **projector replay**: the same process after its offsets were reset to the earliest
//!    (what `eventline replay --to-earliest` does for a database-offset group), re-reading the
//!    whole backlog, every event a duplicate it drops by (time, id).
//!
//! Before those, the database side alone: the same kind of events, decoded in memory, applied
//! by the projector's `Store::apply_batch` (what its handler calls per batch) and by the
//! baseline writer, batch for batch, into two fresh databases; the two read models must come
//! out equal. This part has no broker in it, so it shows what the projector's database work
//! costs against the plain upserts when the broker is not the limit.
//!
//! Knobs: `CATCHUP_BENCH_STORE_EVENTS` (1,000,000), `CATCHUP_BENCH_EVENTS` (1,000,000 through
//! the broker; 0 skips those phases), `CATCHUP_BENCH_DB` (`sqlite` or `postgres`; the machine's server at
//! `TESTKIT_PG_URL`), `CATCHUP_BENCH_BATCH` (500 events per batch for the projector and the
//! baselines alike), `CATCHUP_BENCH_DEADLINE_S` (900 per phase).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use eventline_common::avro;
use eventline_common::contracts::{Contracts, RegisteredEvent};
use eventline_common::db::{Backend, Database, DatabaseSettings};
use eventline_common::envelope::{Envelope, TraceParent};
use eventline_common::events::*;
use eventline_common::kafka::consumer::{OffsetStore, PartitionOffset};
use eventline_common::kafka::KafkaSettings;
use eventline_e2e::Stack;
use eventline_projector::domain::{Customer, Fact, Order, Payment, ReadModel, Recorded};
use eventline_projector::store::Store;
use eventline_testkit::{free_port, unique, Broker, PgDatabase, SqliteDatabase};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use uuid::Uuid;

/// The allocator the `eventline-projector` binary runs with, for the phases in this process.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TOPICS: [&str; 3] = ["orders", "payments", "customers"];

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.replace('_', "").parse().ok()).unwrap_or(default)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(run());
}

/// One measured phase.
struct Row {
    name: &'static str,
    events: u64,
    seconds: f64,
    peak_rss_mb: Option<f64>,
}

impl Row {
    fn rate(&self) -> f64 {
        self.events as f64 / self.seconds
    }
}

async fn run() {
    let events = env_number("CATCHUP_BENCH_EVENTS", 1_000_000);
    let batch = env_number("CATCHUP_BENCH_BATCH", 500) as usize;
    let deadline = Duration::from_secs(env_number("CATCHUP_BENCH_DEADLINE_S", 900));
    let backend = std::env::var("CATCHUP_BENCH_DB").unwrap_or_else(|_| "sqlite".to_owned());
    assert!(backend == "sqlite" || backend == "postgres", "CATCHUP_BENCH_DB is sqlite or postgres");

    let store_events = env_number("CATCHUP_BENCH_STORE_EVENTS", 1_000_000);
    println!("database side alone: {store_events} events in batches of {batch}, no broker");
    let prepared = batches(store_events, batch);
    let rss_before = own_peak_rss_mb();
    let projector_db = BenchDb::create(&backend).await;
    let projector_seconds = store_only_projector(&projector_db.db, &prepared).await;
    let projector_rss = own_peak_rss_mb();
    let baseline_db = BenchDb::create(&backend).await;
    let baseline_seconds = store_only_baseline(&baseline_db.db, &prepared).await;
    compare_read_models(&baseline_db.db, &projector_db.db).await;
    drop(prepared);
    let store_rows = [
        Row {
            name: "store: plain batched SQL upserts (baseline)",
            events: store_events,
            seconds: baseline_seconds,
            peak_rss_mb: None,
        },
        Row {
            name: "store: projector Store::apply_batch",
            events: store_events,
            seconds: projector_seconds,
            peak_rss_mb: Some(projector_rss),
        },
    ];
    print_store_report(&store_rows, &backend, batch, rss_before);

    if events == 0 {
        return;
    }
    let stack = Stack::start_on(Broker::start().await).await;
    println!("broker: Apache Kafka {}", eventline_common::kafka::local_broker::KAFKA_VERSION);
    let kafka = stack.broker.kafka_settings();
    println!("writing a backlog of {events} events (order stories) to {}", TOPICS.join(", "));
    let started = Instant::now();
    let written = tokio::task::block_in_place(|| produce_backlog(&kafka, &stack.contracts, events));
    println!(
        "  written in {:.1} s ({:.0} events/s)",
        started.elapsed().as_secs_f64(),
        written as f64 / started.elapsed().as_secs_f64()
    );
    let ends = end_offsets(&kafka);
    let total: i64 = ends.values().map(|(low, high)| high - low).sum();
    assert_eq!(total as u64, written, "every written event is in the log");

    let mut rows = Vec::new();
    let (count, seconds) = raw_consume(&kafka, &ends, deadline);
    rows.push(Row { name: "raw librdkafka consumer (no processing)", events: count, seconds, peak_rss_mb: None });

    let baseline_db = BenchDb::create(&backend).await;
    let (count, seconds) = sql_baseline(&kafka, &stack.contracts, &baseline_db.db, &ends, batch, deadline).await;
    rows.push(Row { name: "plain batched SQL upserts (baseline)", events: count, seconds, peak_rss_mb: None });

    let projector_db = BenchDb::create(&backend).await;
    let group = unique("bench-projector");
    let projector = ProjectorProcess { stack: &stack, db_url: projector_db.url.clone(), group: group.clone(), batch };
    let offsets = OffsetStore::new(projector_db.db.clone());
    let (seconds, peak) = projector.run_until(&offsets, &ends, deadline).await;
    rows.push(Row { name: "projector catch-up (fresh database)", events: written, seconds, peak_rss_mb: Some(peak) });
    compare_read_models(&baseline_db.db, &projector_db.db).await;

    let earliest: Vec<PartitionOffset> = ends
        .iter()
        .map(|((topic, partition), (low, _))| PartitionOffset {
            topic: topic.clone(),
            partition: *partition,
            next_offset: *low,
        })
        .collect();
    offsets.store(&group, &earliest).await.unwrap();
    let (seconds, peak) = projector.run_until(&offsets, &ends, deadline).await;
    rows.push(Row {
        name: "projector replay from earliest (duplicates)",
        events: written,
        seconds,
        peak_rss_mb: Some(peak),
    });
    compare_read_models(&baseline_db.db, &projector_db.db).await;

    print_report(&rows, &backend, batch);
}

fn print_store_report(rows: &[Row], backend: &str, batch: usize, rss_before: f64) {
    let mut out = String::new();
    writeln!(out, "\ndatabase side alone, {} events, database {backend}, batches of {batch}", rows[0].events).unwrap();
    writeln!(out, "{:<46} {:>9} {:>9} {:>10}", "", "events", "seconds", "events/s").unwrap();
    for row in rows {
        writeln!(out, "{:<46} {:>9} {:>9.1} {:>10.0}", row.name, row.events, row.seconds, row.rate()).unwrap();
    }
    let [baseline, projector] = rows else { unreachable!() };
    writeln!(out, "projector store / SQL baseline: {:.2}", projector.rate() / baseline.rate()).unwrap();
    writeln!(
        out,
        "peak RSS of this process after the projector phase: {:.0} MB (of which {rss_before:.0} MB the prepared events and the process before it)",
        projector.peak_rss_mb.unwrap_or(0.0)
    )
    .unwrap();
    print!("{out}");
}

fn print_report(rows: &[Row], backend: &str, batch: usize) {
    let mut out = String::new();
    writeln!(out, "\ncatch-up of {} events, database {backend}, batches of {batch}", rows[0].events).unwrap();
    writeln!(out, "{:<46} {:>9} {:>9} {:>10} {:>12}", "", "events", "seconds", "events/s", "peak RSS MB").unwrap();
    for row in rows {
        let rss = row.peak_rss_mb.map_or_else(|| "-".to_owned(), |mb| format!("{mb:.0}"));
        writeln!(out, "{:<46} {:>9} {:>9.1} {:>10.0} {:>12}", row.name, row.events, row.seconds, row.rate(), rss)
            .unwrap();
    }
    let [raw, baseline, catchup, replay] = rows else { unreachable!() };
    let slower = if raw.rate() < baseline.rate() { raw } else { baseline };
    writeln!(
        out,
        "projector catch-up / min(raw consumer, SQL baseline): {:.2} (target >= 0.90; against the SQL baseline {:.2})",
        catchup.rate() / slower.rate(),
        catchup.rate() / baseline.rate()
    )
    .unwrap();
    writeln!(out, "projector replay / raw consumer: {:.2} (target >= 0.90)", replay.rate() / raw.rate()).unwrap();
    let peak = catchup.peak_rss_mb.unwrap_or(0.0).max(replay.peak_rss_mb.unwrap_or(0.0));
    writeln!(out, "projector peak memory: {peak:.0} MB (target < 150)").unwrap();
    print!("{out}");
}

/// A fresh database of the chosen backend, with the projector's tables.
struct BenchDb {
    url: String,
    db: Database,
    _sqlite: Option<SqliteDatabase>,
    _pg: Option<PgDatabase>,
}

impl BenchDb {
    async fn create(backend: &str) -> Self {
        let (url, sqlite, pg) = if backend == "postgres" {
            let pg = PgDatabase::create().await;
            (pg.url().to_owned(), None, Some(pg))
        } else {
            let sqlite = SqliteDatabase::create();
            (sqlite.url().to_owned(), Some(sqlite), None)
        };
        let db =
            Database::connect(&DatabaseSettings { url: url.clone(), ..DatabaseSettings::default() }).await.unwrap();
        Store::new(db.clone()).migrate().await.unwrap();
        Self { url, db, _sqlite: sqlite, _pg: pg }
    }
}

// ---------------------------------------------------------------------------------------------
// The backlog

fn at(millis: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(millis).unwrap()
}

/// The facts of order story `i`: its customer registers (the first time), the order is placed,
/// a payment authorized and captured, the order shipped.
fn story(i: u64, customers: u64) -> Vec<Fact> {
    let customer = format!("cust-{}", i % customers);
    let order = format!("order-{i}");
    let payment = format!("pay-{i}");
    let t = 1_700_000_000_000 + i as i64 * 10;
    let total = 1_000 + (i % 97) as i64 * 10;
    let mut facts = Vec::with_capacity(5);
    if i < customers {
        facts.push(Fact::CustomerRegistered(CustomerRegistered {
            customer_id: customer.clone(),
            email: format!("{customer}@example.com"),
            name: format!("Customer {i}"),
            registered_at: at(t),
        }));
    }
    facts.push(Fact::OrderPlaced(OrderPlaced {
        order_id: order.clone(),
        customer_id: customer,
        lines: vec![OrderLine { sku: format!("sku-{}", i % 13), quantity: 1, unit_price_minor: total }],
        currency: "EUR".into(),
        total_minor: total,
        placed_at: at(t + 1),
    }));
    facts.push(Fact::PaymentAuthorized(PaymentAuthorized {
        payment_id: payment.clone(),
        order_id: order.clone(),
        amount_minor: total,
        currency: "EUR".into(),
        authorized_at: at(t + 2),
    }));
    facts.push(Fact::PaymentCaptured(PaymentCaptured {
        payment_id: payment,
        order_id: order.clone(),
        amount_minor: total,
        currency: "EUR".into(),
        captured_at: at(t + 3),
    }));
    facts.push(Fact::OrderShipped(OrderShipped {
        order_id: order,
        carrier: "DHL".into(),
        tracking_number: Some(format!("T-{i}")),
        shipped_at: at(t + 4),
    }));
    facts
}

fn encode<E: DomainEvent + Serialize>(contracts: &Contracts, event: &E) -> (String, String, String, Vec<u8>) {
    let (registered, value) = contracts.encode(event).unwrap();
    (registered.spec.topic.clone(), registered.spec.full_name.clone(), event.key().to_owned(), value)
}

fn encoded(contracts: &Contracts, fact: &Fact) -> (String, String, String, Vec<u8>) {
    match fact {
        Fact::OrderPlaced(e) => encode(contracts, e),
        Fact::OrderCancelled(e) => encode(contracts, e),
        Fact::OrderShipped(e) => encode(contracts, e),
        Fact::PaymentAuthorized(e) => encode(contracts, e),
        Fact::PaymentCaptured(e) => encode(contracts, e),
        Fact::PaymentFailed(e) => encode(contracts, e),
        Fact::PaymentRefunded(e) => encode(contracts, e),
        Fact::CustomerRegistered(e) => encode(contracts, e),
        Fact::CustomerEmailChanged(e) => encode(contracts, e),
    }
}

/// Writes order stories until `events` events are written; returns how many were.
fn produce_backlog(kafka: &KafkaSettings, contracts: &Contracts, events: u64) -> u64 {
    let mut config = kafka.client_config();
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "20")
        .set("batch.num.messages", "1000")
        .set("queue.buffering.max.messages", "200000");
    let producer: ThreadedProducer<DefaultProducerContext> = config.create().unwrap();
    let customers = (events / 50).max(1);
    let mut written = 0;
    let mut i = 0;
    let mut last_report = Instant::now();
    while written < events {
        for fact in story(i, customers) {
            if written == events {
                break;
            }
            let (topic, full_name, key, value) = encoded(contracts, &fact);
            let envelope = Envelope {
                id: Uuid::new_v4(),
                source: "/bench/catchup".into(),
                event_type: full_name,
                time: Utc::now(),
                subject: None,
                traceparent: Some(TraceParent::new_root()),
                correlation_id: None,
            };
            let mut record = BaseRecord::to(&topic).key(&key).payload(&value).headers(envelope.to_headers());
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err((error, _)) => panic!("cannot produce: {error}"),
                }
            }
            written += 1;
        }
        i += 1;
        if last_report.elapsed() > Duration::from_secs(10) {
            println!("  {written} written");
            last_report = Instant::now();
        }
    }
    producer.flush(Duration::from_secs(300)).unwrap();
    assert_eq!(producer.in_flight_count(), 0, "every event acknowledged");
    written
}

type Ends = BTreeMap<(String, i32), (i64, i64)>;

fn end_offsets(kafka: &KafkaSettings) -> Ends {
    let consumer: BaseConsumer = kafka.client_config().create().unwrap();
    let mut ends = BTreeMap::new();
    for topic in TOPICS {
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
        for partition in metadata.topics()[0].partitions() {
            let marks = consumer.fetch_watermarks(topic, partition.id(), Duration::from_secs(10)).unwrap();
            ends.insert((topic.to_owned(), partition.id()), marks);
        }
    }
    ends
}

// ---------------------------------------------------------------------------------------------
// Raw consumer and SQL baseline

/// A consumer assigned every partition of `ends` from its start, with a fresh group.
fn assigned_consumer(kafka: &KafkaSettings, ends: &Ends) -> BaseConsumer {
    let mut config = kafka.client_config();
    config.set("group.id", unique("bench-raw")).set("enable.auto.commit", "false").set("enable.partition.eof", "false");
    let consumer: BaseConsumer = config.create().unwrap();
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), (low, _)) in ends {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(*low)).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    consumer
}

/// Polls `consumer` until every partition reached its end, calling `on` for each record.
fn drain(consumer: &BaseConsumer, ends: &Ends, deadline: Duration, mut on: impl FnMut(&BorrowedMessage<'_>)) -> u64 {
    let started = Instant::now();
    let mut remaining: HashMap<(String, i32), i64> =
        ends.iter().filter(|(_, (low, high))| high > low).map(|(tp, (_, high))| (tp.clone(), *high)).collect();
    let mut count = 0;
    let mut last_report = Instant::now();
    while !remaining.is_empty() {
        assert!(started.elapsed() < deadline, "the phase ran past its deadline");
        if last_report.elapsed() > Duration::from_secs(10) {
            println!("  {count} read, {} partitions not at their end", remaining.len());
            last_report = Instant::now();
        }
        let Some(message) = consumer.poll(Duration::from_millis(500)) else { continue };
        let message = message.unwrap();
        count += 1;
        on(&message);
        let key = (message.topic().to_owned(), message.partition());
        if remaining.get(&key).is_some_and(|high| message.offset() + 1 >= *high) {
            remaining.remove(&key);
        }
    }
    count
}

fn raw_consume(kafka: &KafkaSettings, ends: &Ends, deadline: Duration) -> (u64, f64) {
    let consumer = assigned_consumer(kafka, ends);
    let started = Instant::now();
    let mut bytes = 0usize;
    let count = drain(&consumer, ends, deadline, |m| bytes += m.payload().map_or(0, <[u8]>::len));
    let seconds = started.elapsed().as_secs_f64();
    println!("raw consumer: {count} events, {:.1} MB in {seconds:.1} s", bytes as f64 / 1e6);
    (count, seconds)
}

/// The domain fact in a record, decoded with the writer schema of its frame.
fn decode(by_id: &HashMap<u32, RegisteredEvent>, message: &BorrowedMessage<'_>) -> Recorded {
    let envelope = Envelope::from_headers(message.headers().unwrap()).unwrap();
    let framed = avro::unframe(message.payload().unwrap()).unwrap();
    let spec = &by_id[&framed.schema_id.0].spec;
    macro_rules! typed {
        ($variant:ident) => {
            Fact::$variant(avro::decode(framed.body, &spec.schema, None).unwrap())
        };
    }
    let fact = match spec.name.as_str() {
        OrderPlaced::NAME => typed!(OrderPlaced),
        OrderShipped::NAME => typed!(OrderShipped),
        PaymentAuthorized::NAME => typed!(PaymentAuthorized),
        PaymentCaptured::NAME => typed!(PaymentCaptured),
        CustomerRegistered::NAME => typed!(CustomerRegistered),
        other => panic!("the backlog has no {other}"),
    };
    Recorded::new(envelope.id, envelope.time, fact)
}

/// Raw consumer → decode → in-memory fold → per batch, multi-row upserts of the touched rows
/// and the offsets in one transaction.
async fn sql_baseline(
    kafka: &KafkaSettings,
    contracts: &Contracts,
    db: &Database,
    ends: &Ends,
    batch: usize,
    deadline: Duration,
) -> (u64, f64) {
    let by_id: HashMap<u32, RegisteredEvent> = contracts.events().map(|e| (e.schema_id.0, e.clone())).collect();
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<(Vec<Recorded>, Vec<PartitionOffset>)>(4);
    let started = Instant::now();
    let kafka = kafka.clone();
    let ends_for_reader = ends.clone();
    let reader = tokio::task::spawn_blocking(move || {
        let consumer = assigned_consumer(&kafka, &ends_for_reader);
        let mut pending = Vec::with_capacity(batch);
        let mut positions: BTreeMap<(String, i32), i64> = BTreeMap::new();
        let count = drain(&consumer, &ends_for_reader, deadline, |message| {
            pending.push(decode(&by_id, message));
            positions.insert((message.topic().to_owned(), message.partition()), message.offset() + 1);
            if pending.len() == batch {
                let offsets = positions
                    .iter()
                    .map(|((topic, partition), next)| PartitionOffset {
                        topic: topic.clone(),
                        partition: *partition,
                        next_offset: *next,
                    })
                    .collect();
                sender.blocking_send((std::mem::take(&mut pending), offsets)).unwrap();
            }
        });
        let offsets = positions
            .iter()
            .map(|((topic, partition), next)| PartitionOffset {
                topic: topic.clone(),
                partition: *partition,
                next_offset: *next,
            })
            .collect();
        sender.blocking_send((pending, offsets)).unwrap();
        count
    });
    let mut baseline = Baseline::default();
    while let Some((events, offsets)) = receiver.recv().await {
        baseline.write(db, &events, &offsets).await;
    }
    let count = reader.await.unwrap();
    (count, started.elapsed().as_secs_f64())
}

/// The baseline writer: the whole read model folded in memory, and per batch the rows the
/// batch touched written with multi-row upserts, with the offsets, in one transaction.
#[derive(Default)]
struct Baseline {
    model: ReadModel,
}

impl Baseline {
    async fn write(&mut self, db: &Database, events: &[Recorded], offsets: &[PartitionOffset]) {
        let model = &mut self.model;
        let mut orders = BTreeSet::new();
        let mut customers = BTreeSet::new();
        let mut payments = BTreeSet::new();
        for event in events {
            model.apply(event);
            let fact = &event.fact;
            if let Some(id) = fact.order_id() {
                orders.insert(id.to_owned());
            }
            if let Some(id) = fact.customer_id(fact.order_id().and_then(|id| model.orders.get(id))) {
                customers.insert(id.to_owned());
            }
            if let Some(id) = fact.payment_id() {
                payments.insert(id.to_owned());
            }
        }
        let mut tx = db.pool().begin().await.unwrap();
        let orders: Vec<&Order> = orders.iter().filter_map(|id| model.orders.get(id)).collect();
        let customers: Vec<&Customer> = customers.iter().filter_map(|id| model.customers.get(id)).collect();
        let payments: Vec<&Payment> = payments.iter().filter_map(|id| model.payments.get(id)).collect();
        upsert_orders(&mut tx, db.backend(), &orders).await;
        upsert_customers(&mut tx, db.backend(), &customers).await;
        upsert_payments(&mut tx, db.backend(), &payments).await;
        OffsetStore::save(&mut tx, "bench-baseline", offsets).await.unwrap();
        tx.commit().await.unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// The database side alone: the same events, decoded, straight into the projector's store and
// into the baseline writer, without a broker.

/// `events` order-story events in batches of `batch`, with their offsets on one partition.
fn batches(events: u64, batch: usize) -> Vec<(Vec<Recorded>, Vec<PartitionOffset>)> {
    let customers = (events / 50).max(1);
    let mut all = Vec::with_capacity(events as usize);
    let mut i = 0;
    while (all.len() as u64) < events {
        for fact in story(i, customers) {
            if (all.len() as u64) < events {
                all.push(Recorded::new(Uuid::new_v4(), at(1_700_000_000_000 + all.len() as i64), fact));
            }
        }
        i += 1;
    }
    let mut next = 0;
    all.chunks(batch)
        .map(|chunk| {
            next += chunk.len() as i64;
            let offsets = vec![PartitionOffset { topic: "orders".into(), partition: 0, next_offset: next }];
            (chunk.to_vec(), offsets)
        })
        .collect()
}

/// The projector's store (what its handler calls per batch) over `batches`: seconds.
async fn store_only_projector(db: &Database, batches: &[(Vec<Recorded>, Vec<PartitionOffset>)]) -> f64 {
    let store = Store::new(db.clone());
    let started = Instant::now();
    for (events, offsets) in batches {
        store.apply_batch("bench-store", offsets, events).await.unwrap();
    }
    started.elapsed().as_secs_f64()
}

/// The baseline writer over `batches`: seconds.
async fn store_only_baseline(db: &Database, batches: &[(Vec<Recorded>, Vec<PartitionOffset>)]) -> f64 {
    let mut baseline = Baseline::default();
    let started = Instant::now();
    for (events, offsets) in batches {
        baseline.write(db, events, offsets).await;
    }
    started.elapsed().as_secs_f64()
}

/// This process's peak resident set size so far, in MB.
fn own_peak_rss_mb() -> f64 {
    peak_rss_mb(std::process::id())
}

/// The most bind parameters per statement, and the placeholders, as the projector's store uses:
/// anonymous `?` on SQLite (sqlx-sqlite looks up every parameter's name, which SQLite finds by a
/// linear scan of the named ones, so numbered parameters cost O(n²)), `$n` on PostgreSQL.
const MAX_PARAMETERS: usize = 960;

fn rows_per_statement(columns: usize) -> usize {
    (MAX_PARAMETERS / columns).max(1)
}

fn placeholders(backend: Backend, rows: usize, columns: usize) -> String {
    let mut out = String::new();
    for row in 0..rows {
        if row > 0 {
            out.push(',');
        }
        out.push('(');
        for column in 0..columns {
            if column > 0 {
                out.push(',');
            }
            match backend {
                Backend::Sqlite => out.push('?'),
                Backend::Postgres => write!(out, "${}", row * columns + column + 1).unwrap(),
            }
        }
        out.push(')');
    }
    out
}

fn millis(time: Option<DateTime<Utc>>) -> Option<i64> {
    time.map(|t| t.timestamp_millis())
}

async fn upsert_orders(tx: &mut sqlx::Transaction<'_, sqlx::Any>, backend: Backend, orders: &[&Order]) {
    for chunk in orders.chunks(rows_per_statement(15)) {
        let sql = format!(
            "INSERT INTO projector_orders (order_id, customer_id, currency, total_minor, status, placed_at_ms, \
             cancelled_at_ms, cancel_reason, shipped_at_ms, carrier, tracking_number, captured_minor, refunded_minor, \
             last_event_id, last_event_ms) VALUES {} ON CONFLICT (order_id) DO UPDATE SET \
             customer_id = excluded.customer_id, currency = excluded.currency, total_minor = excluded.total_minor, \
             status = excluded.status, placed_at_ms = excluded.placed_at_ms, cancelled_at_ms = excluded.cancelled_at_ms, \
             cancel_reason = excluded.cancel_reason, shipped_at_ms = excluded.shipped_at_ms, carrier = excluded.carrier, \
             tracking_number = excluded.tracking_number, captured_minor = excluded.captured_minor, \
             refunded_minor = excluded.refunded_minor, last_event_id = excluded.last_event_id, \
             last_event_ms = excluded.last_event_ms",
            placeholders(backend, chunk.len(), 15)
        );
        let mut query = sqlx::query(&sql);
        for o in chunk {
            query = query
                .bind(o.order_id.clone())
                .bind(o.customer_id.clone())
                .bind(o.currency.clone())
                .bind(o.total_minor)
                .bind(o.status().as_str())
                .bind(millis(o.placed_at))
                .bind(millis(o.cancelled_at))
                .bind(o.cancel_reason.clone())
                .bind(millis(o.shipped_at))
                .bind(o.carrier.clone())
                .bind(o.tracking_number.clone())
                .bind(o.captured_minor)
                .bind(o.refunded_minor)
                .bind(o.last_event.event_id.to_string())
                .bind(o.last_event.time.timestamp_millis());
        }
        query.execute(&mut **tx).await.unwrap();
    }
}

async fn upsert_customers(tx: &mut sqlx::Transaction<'_, sqlx::Any>, backend: Backend, customers: &[&Customer]) {
    for chunk in customers.chunks(rows_per_statement(8)) {
        let sql = format!(
            "INSERT INTO projector_customers (customer_id, email, name, registered_at_ms, order_count, \
             lifetime_value_minor, last_event_id, last_event_ms) VALUES {} ON CONFLICT (customer_id) DO UPDATE SET \
             email = excluded.email, name = excluded.name, registered_at_ms = excluded.registered_at_ms, \
             order_count = excluded.order_count, lifetime_value_minor = excluded.lifetime_value_minor, \
             last_event_id = excluded.last_event_id, last_event_ms = excluded.last_event_ms",
            placeholders(backend, chunk.len(), 8)
        );
        let mut query = sqlx::query(&sql);
        for c in chunk {
            query = query
                .bind(c.customer_id.clone())
                .bind(c.email.clone())
                .bind(c.name.clone())
                .bind(millis(c.registered_at))
                .bind(c.order_count)
                .bind(c.lifetime_value_minor)
                .bind(c.last_event.event_id.to_string())
                .bind(c.last_event.time.timestamp_millis());
        }
        query.execute(&mut **tx).await.unwrap();
    }
}

async fn upsert_payments(tx: &mut sqlx::Transaction<'_, sqlx::Any>, backend: Backend, payments: &[&Payment]) {
    for chunk in payments.chunks(rows_per_statement(10)) {
        let sql = format!(
            "INSERT INTO projector_payments (payment_id, order_id, currency, status, authorized_minor, \
             captured_minor, refunded_minor, failure_reason, last_event_id, last_event_ms) VALUES {} \
             ON CONFLICT (payment_id) DO UPDATE SET order_id = excluded.order_id, currency = excluded.currency, \
             status = excluded.status, authorized_minor = excluded.authorized_minor, \
             captured_minor = excluded.captured_minor, refunded_minor = excluded.refunded_minor, \
             failure_reason = excluded.failure_reason, last_event_id = excluded.last_event_id, \
             last_event_ms = excluded.last_event_ms",
            placeholders(backend, chunk.len(), 10)
        );
        let mut query = sqlx::query(&sql);
        for p in chunk {
            query = query
                .bind(p.payment_id.clone())
                .bind(p.order_id.clone())
                .bind(p.currency.clone())
                .bind(p.status().as_str())
                .bind(p.authorized_minor)
                .bind(p.captured_minor)
                .bind(p.refunded_minor)
                .bind(p.failure_reason.clone())
                .bind(p.last_event.event_id.to_string())
                .bind(p.last_event.time.timestamp_millis());
        }
        query.execute(&mut **tx).await.unwrap();
    }
}

/// The two databases hold the same read model rows (a benchmark that computes something else
/// measures nothing).
async fn compare_read_models(baseline: &Database, projector: &Database) {
    for (table, key) in
        [("projector_orders", "order_id"), ("projector_customers", "customer_id"), ("projector_payments", "payment_id")]
    {
        let digest = |db: Database| async move {
            let sql = format!("SELECT * FROM {table} ORDER BY {key}");
            let rows = sqlx::query(&sql).fetch_all(db.pool()).await.unwrap();
            let mut text = String::new();
            for row in &rows {
                use sqlx::Row as _;
                for i in 0..row.len() {
                    let value: Option<String> = row
                        .try_get::<Option<String>, _>(i)
                        .or_else(|_| row.try_get::<Option<i64>, _>(i).map(|v| v.map(|v| v.to_string())))
                        .unwrap();
                    write!(text, "{value:?}|").unwrap();
                }
                text.push('\n');
            }
            (rows.len(), text)
        };
        let (expected_rows, expected) = digest(baseline.clone()).await;
        let (actual_rows, actual) = digest(projector.clone()).await;
        assert_eq!(actual_rows, expected_rows, "{table}: row counts differ");
        assert!(actual == expected, "{table}: the projector's rows differ from the baseline's");
    }
}

// ---------------------------------------------------------------------------------------------
// The projector process

struct ProjectorProcess<'a> {
    stack: &'a Stack,
    db_url: String,
    group: String,
    batch: usize,
}

impl ProjectorProcess<'_> {
    fn spawn(&self) -> Child {
        let listen = format!("127.0.0.1:{}", free_port());
        Command::new(env!("CARGO_BIN_EXE_eventline-projector"))
            .env("EVENTLINE_KAFKA__BOOTSTRAP_SERVERS", self.stack.broker.bootstrap_servers())
            .env("EVENTLINE_SCHEMA_REGISTRY__URL", &self.stack.registry.url)
            .env("EVENTLINE_DATABASE__URL", &self.db_url)
            .env("EVENTLINE_CONSUMERS__PROJECTOR__LISTEN", listen)
            .env("EVENTLINE_CONSUMERS__PROJECTOR__CONSUMER__GROUP_ID", &self.group)
            .env("EVENTLINE_CONSUMERS__PROJECTOR__CONSUMER__BATCH_MAX_SIZE", self.batch.to_string())
            .env("EVENTLINE_TELEMETRY__LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("eventline-projector starts")
    }

    /// Runs the projector until its stored offsets reach `ends`; seconds taken and peak RSS (MB).
    async fn run_until(&self, offsets: &OffsetStore, ends: &Ends, deadline: Duration) -> (f64, f64) {
        let started = Instant::now();
        let mut child = self.spawn();
        let pid = child.id();
        let mut peak = 0.0f64;
        let mut last_report = Instant::now();
        loop {
            assert!(started.elapsed() < deadline, "the projector did not catch up in time");
            assert!(child.try_wait().unwrap().is_none(), "the projector exited early");
            peak = peak.max(peak_rss_mb(pid));
            let stored: BTreeMap<(String, i32), i64> = offsets
                .list(&self.group)
                .await
                .unwrap()
                .into_iter()
                .map(|p| ((p.topic, p.partition), p.next_offset))
                .collect();
            let behind: i64 =
                ends.iter().map(|(tp, (low, high))| high - stored.get(tp).copied().unwrap_or(*low).max(*low)).sum();
            if behind == 0 {
                break;
            }
            if last_report.elapsed() > Duration::from_secs(10) {
                println!("  projector: {behind} events behind after {:.0} s", started.elapsed().as_secs_f64());
                last_report = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let seconds = started.elapsed().as_secs_f64();
        peak = peak.max(peak_rss_mb(pid));
        Command::new("kill").arg("-TERM").arg(pid.to_string()).status().unwrap();
        child.wait().unwrap();
        (seconds, peak)
    }
}

/// The peak resident set size of `pid` so far (`VmHWM`), in MB.
fn peak_rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}
