//! `eventline rebuild projector`: build the projector's read model again from the start of the
//! log into tables of its own, under a consumer group of its own, while the running projector
//! keeps serving; then swap it in atomically and keep the old one for a rollback.
//!
//! - `eventline rebuild projector`: builds generation N+1 with progress every 2 s (events
//!   applied, lag, rate, time left); once it has caught up it becomes active in one transaction
//!   and the running projector follows it within half a second. Ctrl-C before that stops the
//!   build: generation N stays active and untouched, N+1 is retired and its tables dropped.
//! - `--rollback`: the previous generation is active again (the running projector switches
//!   back, and that generation's group catches up from its own offsets).
//! - `--status`: the generations and their states.
//!
//! Reads the sections `kafka`, `schema_registry`, `database` and `projector` (its consumer
//! group and topics) like the projector itself. The work is in
//! [`eventline_projector::rebuild`]; this module only prints.

use std::path::Path;

use anyhow::Context;
use chrono::DateTime;
use clap::{Args, ValueEnum};
use eventline_common::catalog::Catalog;
use eventline_common::config::Section;
use eventline_common::db::{Database, DatabaseSettings};
use eventline_common::kafka::connection::{check_connection, CONNECT_TIMEOUT};
use eventline_common::kafka::KafkaSettings;
use eventline_common::registry_client::{RegistryClient, SchemaRegistrySettings};
use eventline_common::service::ConsumerService as _;
use eventline_projector::generations::Generation;
use eventline_projector::rebuild::{
    self, BuildProgress, GenerationsStatus, RebuildContext, RebuildEvent, RebuildOutcome, RebuildSummary,
    RollbackSummary, STALE_AFTER,
};
use eventline_projector::{ProjectorService, ProjectorSettings};
use tokio_util::sync::CancellationToken;

use super::publish::OutputFormat;

#[derive(Debug, Args)]
pub struct RebuildArgs {
    /// The read model to rebuild.
    pub target: RebuildTarget,
    /// Make the previous generation active again instead of building a new one.
    #[arg(long, conflicts_with = "status")]
    pub rollback: bool,
    /// List the generations and their states; change nothing.
    #[arg(long)]
    pub status: bool,
    /// `text` (default) or `json` for scripts (progress then goes to stderr as JSON lines).
    #[arg(long, default_value = "text")]
    pub output: OutputFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RebuildTarget {
    /// The projector's read models (orders, customers, payments) and their query API.
    Projector,
}

/// What the command reads from config.
struct RebuildConfig {
    kafka: KafkaSettings,
    schema_registry: SchemaRegistrySettings,
    database: DatabaseSettings,
    projector: ProjectorSettings,
}

impl RebuildConfig {
    fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let source = crate::services::config(file)?;
        Ok(Self {
            kafka: source.section(Section::Kafka)?,
            schema_registry: source.section(Section::SchemaRegistry)?,
            database: source.section(Section::Database)?,
            projector: source.consumer(ProjectorService::NAME, ProjectorSettings::default())?,
        })
    }
}

/// The generations of the projector's read model in `database` (`--status`).
pub async fn status(database: &DatabaseSettings, projector: &ProjectorSettings) -> anyhow::Result<GenerationsStatus> {
    let db = open_database(database).await?;
    rebuild::status(&db, &projector.consumer.group_id)
        .await
        .context("cannot read the projector's generations (has the projector run against this database?)")
}

/// Makes the previous generation active again (`--rollback`). A [`GenerationError`] inside the
/// error says why it was refused (e.g. no previous generation).
///
/// [`GenerationError`]: eventline_projector::generations::GenerationError
pub async fn rollback(database: &DatabaseSettings, projector: &ProjectorSettings) -> anyhow::Result<RollbackSummary> {
    let db = open_database(database).await?;
    rebuild::rollback(&db, &projector.consumer.group_id).await.context("cannot roll back")
}

pub async fn run(config_file: Option<&Path>, args: RebuildArgs) -> anyhow::Result<()> {
    let RebuildTarget::Projector = args.target;
    let config = RebuildConfig::load(config_file)?;
    if args.status {
        return print_status(&status(&config.database, &config.projector).await?, args.output);
    }
    if args.rollback {
        return print_rollback(&rollback(&config.database, &config.projector).await?, args.output);
    }
    check_connection(&config.kafka, CONNECT_TIMEOUT).await?;
    let db = open_database(&config.database).await?;
    let context = RebuildContext {
        registry_client: RegistryClient::new(&config.schema_registry)?,
        catalog: Catalog::embedded().context("the embedded catalog is invalid")?,
        settings: config.projector,
        kafka: config.kafka,
        db,
    };
    let stop = CancellationToken::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        eventline_common::shutdown::wait_for_signal().await;
        on_signal.cancel();
    });
    let output = args.output;
    let summary = rebuild::rebuild(context, stop, |event| print_event(event, output))
        .await
        .context("the rebuild failed; the active generation was not changed")?;
    print_summary(&summary, output)?;
    anyhow::ensure!(
        summary.outcome == RebuildOutcome::Swapped,
        "the rebuild was interrupted before the swap (see above)"
    );
    Ok(())
}

/// The configured database; a SQLite file that does not exist is a mistake, not a new database.
async fn open_database(settings: &DatabaseSettings) -> anyhow::Result<Database> {
    if let Some(path) = settings.url.strip_prefix("sqlite://") {
        let path = path.split('?').next().unwrap_or(path);
        anyhow::ensure!(
            Path::new(path).exists(),
            "no database at {path} (database.url): point it at the projector's database"
        );
    }
    Database::connect(settings).await.context("cannot connect to the projector's database (database.url)")
}

fn time(millis: Option<i64>) -> String {
    millis
        .and_then(DateTime::from_timestamp_millis)
        .map_or_else(|| "-".to_owned(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

fn tables(generation: &Generation) -> String {
    format!("{}*", generation.table_prefix)
}

fn print_event(event: &RebuildEvent, output: OutputFormat) {
    if output == OutputFormat::Json {
        if let Ok(line) = serde_json::to_string(event) {
            eprintln!("{line}");
        }
        return;
    }
    match event {
        RebuildEvent::CleanedUp { generation } => eprintln!(
            "cleaned up generation {generation}: its build stopped sending heartbeats more than \
             {}s ago (killed?); retired, tables dropped",
            STALE_AFTER.as_secs()
        ),
        RebuildEvent::Started { generation, group_id, table_prefix, serving } => eprintln!(
            "building generation {generation} (tables {table_prefix}*, group {group_id}) from the \
             earliest offsets; generation {serving} keeps serving"
        ),
        RebuildEvent::Progress(progress) => eprintln!("{}", progress_line(progress)),
    }
}

fn progress_line(progress: &BuildProgress) -> String {
    let left = match progress.seconds_left {
        _ if progress.behind_active_partitions > 0 => {
            format!(", waiting to reach the active generation on {} partitions", progress.behind_active_partitions)
        }
        Some(seconds) if progress.lag > 0 => format!(", about {seconds:.0}s left"),
        _ if progress.lag == 0 => ", caught up".to_owned(),
        _ => String::new(),
    };
    format!(
        "generation {}: {} events applied, lag {}, {:.0} events/s{left}",
        progress.generation, progress.events_handled, progress.lag, progress.events_per_second
    )
}

fn print_summary(summary: &RebuildSummary, output: OutputFormat) -> anyhow::Result<()> {
    if output == OutputFormat::Json {
        println!("{}", serde_json::to_string_pretty(summary)?);
        return Ok(());
    }
    match summary.outcome {
        RebuildOutcome::Swapped => {
            println!(
                "generation {} is active: {} events applied in {:.1}s (tables {}*, group {})",
                summary.generation,
                summary.events_handled,
                summary.elapsed_seconds,
                summary.table_prefix,
                summary.group_id
            );
            println!(
                "generation {} is kept as previous; `eventline rebuild projector --rollback` makes it active again",
                summary.serving
            );
            for retired in &summary.retired {
                println!("generation {retired} was retired and its tables dropped");
            }
        }
        RebuildOutcome::Interrupted => println!(
            "interrupted: generation {} is still active and untouched; generation {} was retired \
             and its tables dropped",
            summary.serving, summary.generation
        ),
    }
    Ok(())
}

fn print_rollback(summary: &RollbackSummary, output: OutputFormat) -> anyhow::Result<()> {
    if output == OutputFormat::Json {
        println!("{}", serde_json::to_string_pretty(summary)?);
        return Ok(());
    }
    println!(
        "generation {} is active again (tables {}, group {}); the running projector switches to it \
         and catches up from that group's own offsets",
        summary.activated.generation,
        tables(&summary.activated),
        summary.activated.group_id
    );
    println!("generation {} is now previous; `eventline rebuild projector --rollback` returns to it", summary.demoted);
    Ok(())
}

fn print_status(status: &GenerationsStatus, output: OutputFormat) -> anyhow::Result<()> {
    if output == OutputFormat::Json {
        println!("{}", serde_json::to_string_pretty(status)?);
        return Ok(());
    }
    println!(
        "{:>10}  {:<9} {:<36} {:<18} {:>14}  {:<19}  activated",
        "generation", "state", "group", "tables", "applied events", "created"
    );
    for listed in &status.generations {
        let generation = &listed.generation;
        let applied = listed.applied_events.map_or_else(|| "-".to_owned(), |n| n.to_string());
        println!(
            "{:>10}  {:<9} {:<36} {:<18} {:>14}  {:<19}  {}",
            generation.generation,
            generation.state.as_str(),
            generation.group_id,
            tables(generation),
            applied,
            time(Some(generation.created_at_ms)),
            time(generation.activated_at_ms)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_say_what_is_left() {
        let mut progress = BuildProgress {
            generation: 2,
            events_handled: 1_500,
            lag: 500,
            events_per_second: 250.0,
            seconds_left: Some(2.0),
            elapsed_seconds: 6.0,
            behind_active_partitions: 0,
        };
        assert_eq!(progress_line(&progress), "generation 2: 1500 events applied, lag 500, 250 events/s, about 2s left");
        progress.lag = 0;
        assert!(progress_line(&progress).ends_with("caught up"));
        progress.behind_active_partitions = 2;
        assert!(progress_line(&progress).ends_with("waiting to reach the active generation on 2 partitions"));
    }
}
