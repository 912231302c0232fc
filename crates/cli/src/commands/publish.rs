//! `eventline publish`: NDJSON events from a file or stdin, validated like HTTP ingest (the same
//! shared path), published in order, with progress on large inputs and a summary at the end.
//!
//! One event per line: `{"type": "OrderPlaced", "id": "…"?, "source"?, "time"?, "subject"?, "data": {…}}`.
//! Blank lines are skipped. A line that is not valid JSON or not a valid event is rejected with
//! its line number and every reason; the lines around it are still published. Give events an
//! `id` to make a re-run harmless: consumers drop an event id they have already applied.

use std::collections::VecDeque;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use eventline_common::avro_json::FieldError;
use eventline_common::catalog::Catalog;
use eventline_common::config::Section;
use eventline_common::contracts::Contracts;
use eventline_common::kafka::connection::{check_connection, CONNECT_TIMEOUT};
use eventline_common::kafka::producer::{EventProducer, ProduceError, ProducerSettings};
use eventline_common::kafka::{KafkaSettings, Position};
use eventline_common::publish::{prepare, Origin, Publisher};
use eventline_common::registry_client::{RegistryClient, SchemaRegistrySettings};
use serde::Serialize;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};

/// The `source` of events that name none.
pub const DEFAULT_SOURCE: &str = "/cli/publish";
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The NDJSON file; `-` or nothing reads standard input.
    pub file: Option<PathBuf>,
    /// CloudEvents `source` for events that carry none.
    #[arg(long, default_value = DEFAULT_SOURCE)]
    pub source: String,
    /// Validate every line, publish nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// How many events may await the broker's acknowledgement at once.
    #[arg(long, default_value_t = 2000)]
    pub window: usize,
    /// `text` (default) or `json` for scripts.
    #[arg(long, default_value = "text")]
    pub output: OutputFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Rejected {
    pub line: u64,
    pub errors: Vec<FieldError>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Failed {
    pub line: u64,
    pub reason: String,
}

/// What happened to the input.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub lines: u64,
    pub published: u64,
    pub validated: u64,
    pub rejected: Vec<Rejected>,
    pub failed: Vec<Failed>,
    pub interrupted: bool,
    pub elapsed_seconds: f64,
}

impl Summary {
    pub fn succeeded(&self) -> bool {
        self.rejected.is_empty() && self.failed.is_empty() && !self.interrupted
    }
}

type Delivery = Pin<Box<dyn Future<Output = Result<Position, ProduceError>> + Send>>;

/// Reads `input` line by line, validates, publishes (unless `publisher` is `None`: dry run).
/// `total_bytes` (when known) drives the progress estimate; `stop` ends reading early.
pub async fn publish_lines<R: AsyncBufRead + Unpin>(
    input: R,
    contracts: &Contracts,
    publisher: Option<&Publisher>,
    origin: &Origin,
    window: usize,
    total_bytes: Option<u64>,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let mut summary = Summary::default();
    let mut in_flight: VecDeque<(u64, Delivery)> = VecDeque::new();
    let mut lines = input.lines();
    let mut bytes_read: u64 = 0;
    let mut last_progress = Instant::now();
    tokio::pin!(stop);
    loop {
        let next = tokio::select! {
            biased;
            () = &mut stop => { summary.interrupted = true; break; }
            next = lines.next_line() => next.context("cannot read the input")?,
        };
        let Some(text) = next else { break };
        summary.lines += 1;
        bytes_read += text.len() as u64 + 1;
        let line = summary.lines;
        if text.trim().is_empty() {
            continue;
        }
        let json: serde_json::Value = match serde_json::from_str(&text) {
            Ok(json) => json,
            Err(e) => {
                let message = format!("not valid JSON: {e}");
                summary.rejected.push(Rejected { line, errors: vec![FieldError { path: "$".into(), message }] });
                continue;
            }
        };
        let event = match prepare(contracts, &json, origin) {
            Ok(event) => event,
            Err(invalid) => {
                summary.rejected.push(Rejected { line, errors: invalid.errors() });
                continue;
            }
        };
        summary.validated += 1;
        if let Some(publisher) = publisher {
            match publisher.enqueue(&event).await {
                Ok(delivery) => in_flight.push_back((line, Box::pin(delivery))),
                Err(error) => summary.failed.push(Failed { line, reason: error.to_string() }),
            }
            while in_flight.len() >= window.max(1) {
                settle(&mut in_flight, &mut summary).await;
            }
        }
        if last_progress.elapsed() >= PROGRESS_EVERY {
            last_progress = Instant::now();
            eprintln!("{}", progress_line(&summary, bytes_read, total_bytes, started.elapsed()));
        }
    }
    while !in_flight.is_empty() {
        settle(&mut in_flight, &mut summary).await;
    }
    summary.elapsed_seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

async fn settle(in_flight: &mut VecDeque<(u64, Delivery)>, summary: &mut Summary) {
    if let Some((line, delivery)) = in_flight.pop_front() {
        match delivery.await {
            Ok(_) => summary.published += 1,
            Err(error) => summary.failed.push(Failed { line, reason: error.to_string() }),
        }
    }
}

fn progress_line(summary: &Summary, bytes_read: u64, total: Option<u64>, elapsed: Duration) -> String {
    let rate = summary.validated as f64 / elapsed.as_secs_f64().max(0.001);
    let mut line = format!(
        "line {}: {} published, {} rejected, {:.0} events/s",
        summary.lines,
        summary.published,
        summary.rejected.len(),
        rate
    );
    if let Some(total) = total.filter(|t| *t > 0) {
        let done = (bytes_read as f64 / total as f64).min(1.0);
        let left = elapsed.as_secs_f64() * (1.0 - done) / done.max(0.0001);
        line.push_str(&format!(", {:.0}% read, about {:.0}s left", done * 100.0, left));
    }
    line
}

pub async fn run(config_file: Option<&Path>, args: PublishArgs) -> anyhow::Result<()> {
    let source = crate::services::config(config_file)?;
    let kafka: KafkaSettings = source.section(Section::Kafka)?;
    if !args.dry_run {
        check_connection(&kafka, CONNECT_TIMEOUT).await?;
    }
    let registry: SchemaRegistrySettings = source.section(Section::SchemaRegistry)?;
    let catalog = Catalog::embedded().context("the embedded catalog is invalid")?;
    let client = RegistryClient::new(&registry)?;
    let contracts = Arc::new(
        Contracts::register(catalog, &client)
            .await
            .with_context(|| format!("cannot get the schemas from {}", registry.url))?,
    );
    let publisher = if args.dry_run {
        None
    } else {
        Some(Publisher::new(EventProducer::new(&kafka, &ProducerSettings::default())?, contracts.clone()))
    };
    let origin = Origin { source: args.source.clone(), traceparent: None, correlation_id: None };
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let summary = match args.file.as_deref().filter(|p| *p != Path::new("-")) {
        Some(path) => {
            let file = tokio::fs::File::open(path).await.with_context(|| format!("cannot open {}", path.display()))?;
            let size = file.metadata().await.ok().map(|m| m.len());
            publish_lines(BufReader::new(file), &contracts, publisher.as_ref(), &origin, args.window, size, stop)
                .await?
        }
        None => {
            let stdin = BufReader::new(tokio::io::stdin());
            publish_lines(stdin, &contracts, publisher.as_ref(), &origin, args.window, None, stop).await?
        }
    };
    print_summary(&summary, args.output, args.dry_run)?;
    anyhow::ensure!(summary.succeeded(), "not every line was published (see above)");
    Ok(())
}

const SHOWN_REJECTIONS: usize = 50;

fn print_summary(summary: &Summary, output: OutputFormat, dry_run: bool) -> anyhow::Result<()> {
    if output == OutputFormat::Json {
        println!("{}", serde_json::to_string_pretty(summary)?);
        return Ok(());
    }
    for rejected in summary.rejected.iter().take(SHOWN_REJECTIONS) {
        for error in &rejected.errors {
            println!("line {}: {}: {}", rejected.line, error.path, error.message);
        }
    }
    if summary.rejected.len() > SHOWN_REJECTIONS {
        println!("… and {} more rejected lines (use --output json for all)", summary.rejected.len() - SHOWN_REJECTIONS);
    }
    for failed in &summary.failed {
        println!("line {}: not published: {}", failed.line, failed.reason);
    }
    let verb = if dry_run { "valid (dry run, nothing published)" } else { "published" };
    let count = if dry_run { summary.validated } else { summary.published };
    println!(
        "{count} {verb}, {} rejected, {} failed, {} lines in {:.1}s{}",
        summary.rejected.len(),
        summary.failed.len(),
        summary.lines,
        summary.elapsed_seconds,
        if summary.interrupted { " (interrupted: the rest of the input was not read)" } else { "" }
    );
    Ok(())
}
