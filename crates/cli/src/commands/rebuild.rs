//! `eventline rebuild <consumer>`: build a consumer service's tables again from the start of
//! the log into tables of their own, under a consumer group of its own, while the running
//! service keeps serving; then swap them in atomically and keep the old ones for a rollback.
//! Any registered consumer that is [`Rebuildable`](eventline_common::service::Rebuildable)
//! (the projector's read model today) can be named; another name is refused with the list.
//!
//! - `eventline rebuild projector`: builds generation N+1 with progress every 2 s (events
//!   applied, lag, rate, time left); once it has caught up it becomes active in one transaction
//!   and the running service follows it within half a second. Ctrl-C before that stops the
//!   build: generation N stays active and untouched, N+1 is retired and its tables dropped.
//! - `--rollback`: the previous generation is active again (the running service switches
//!   back, and that generation's group catches up from its own offsets).
//! - `--status`: the generations and their states.
//!
//! Reads the sections `kafka`, `schema_registry`, `database` and `consumers.<consumer>` (its
//! consumer group and topics) like the service itself. The work is in
//! [`eventline_common::generations`]; this module only prints.

use std::path::Path;

use anyhow::Context;
use chrono::DateTime;
use clap::builder::PossibleValuesParser;
use clap::Args;
use eventline_common::catalog::Catalog;
use eventline_common::config::{ConfigSource, Section};
use eventline_common::db::{Database, DatabaseSettings};
use eventline_common::generations::{
    self, BuildProgress, Generation, Generations, GenerationsStatus, RebuildEvent, RebuildOutcome, RebuildSummary,
    RollbackSummary, STALE_AFTER,
};
use eventline_common::kafka::connection::{check_connection, CONNECT_TIMEOUT};
use eventline_common::kafka::KafkaSettings;
use eventline_common::registry_client::{RegistryClient, SchemaRegistrySettings};
use eventline_common::service::{Platform, RebuildEntry};
use tokio_util::sync::CancellationToken;

use super::publish::OutputFormat;
use crate::services;

#[derive(Debug, Args)]
pub struct RebuildArgs {
    /// The consumer service whose tables to rebuild.
    #[arg(value_parser = PossibleValuesParser::new(services::rebuildable_names()))]
    pub target: String,
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

/// The rebuildable consumer `name`, or an error listing the rebuildable ones.
pub fn rebuildable(name: &str) -> anyhow::Result<&'static RebuildEntry> {
    services::consumer(name).and_then(|entry| entry.rebuild()).with_context(|| {
        format!(
            "`{name}` is not a consumer that can be rebuilt (these can: {})",
            services::rebuildable_names().join(", ")
        )
    })
}

/// The generations of the consumer `name` in `database`, recorded first if the service has
/// not run since `eventline_generations` exists.
async fn generations_of(name: &str, database: &DatabaseSettings, source: &ConfigSource) -> anyhow::Result<Generations> {
    let entry = rebuildable(name)?;
    let db = open_database(name, database).await?;
    let generations = entry.generations(db, source)?;
    generations
        .ensure()
        .await
        .with_context(|| format!("cannot read the generations of {name} (has {name} run against this database?)"))?;
    Ok(generations)
}

/// The generations of the consumer `name` in `database` (`--status`).
pub async fn status(
    name: &str,
    database: &DatabaseSettings,
    source: &ConfigSource,
) -> anyhow::Result<GenerationsStatus> {
    let generations = generations_of(name, database, source).await?;
    generations::status(&generations)
        .await
        .with_context(|| format!("cannot read the generations of {name} (has {name} run against this database?)"))
}

/// Makes the previous generation of the consumer `name` active again (`--rollback`). A
/// [`GenerationError`] inside the error says why it was refused (e.g. no previous generation).
///
/// [`GenerationError`]: eventline_common::generations::GenerationError
pub async fn rollback(
    name: &str,
    database: &DatabaseSettings,
    source: &ConfigSource,
) -> anyhow::Result<RollbackSummary> {
    let generations = generations_of(name, database, source).await?;
    generations::rollback(&generations).await.context("cannot roll back")
}

pub async fn run(config_file: Option<&Path>, args: RebuildArgs) -> anyhow::Result<()> {
    let name = args.target.as_str();
    let entry = rebuildable(name)?;
    let source = services::config(config_file)?;
    let database: DatabaseSettings = source.section(Section::Database)?;
    if args.status {
        return print_status(&status(name, &database, &source).await?, args.output);
    }
    if args.rollback {
        return print_rollback(name, &rollback(name, &database, &source).await?, args.output);
    }
    let kafka: KafkaSettings = source.section(Section::Kafka)?;
    let schema_registry: SchemaRegistrySettings = source.section(Section::SchemaRegistry)?;
    check_connection(&kafka, CONNECT_TIMEOUT).await?;
    let platform = Platform {
        db: open_database(name, &database).await?,
        registry_client: RegistryClient::new(&schema_registry)?,
        catalog: Catalog::embedded().context("the embedded catalog is invalid")?,
        kafka,
        metrics: prometheus::Registry::new(),
    };
    let stop = CancellationToken::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        eventline_common::shutdown::wait_for_signal().await;
        on_signal.cancel();
    });
    let output = args.output;
    let summary = entry
        .rebuild(platform, source, stop, Box::new(move |event| print_event(event, output)))
        .await
        .context("the rebuild failed; the active generation was not changed")?;
    print_summary(name, &summary, output)?;
    anyhow::ensure!(
        summary.outcome == RebuildOutcome::Swapped,
        "the rebuild was interrupted before the swap (see above)"
    );
    Ok(())
}

/// The configured database; a SQLite file that does not exist is a mistake, not a new database.
async fn open_database(name: &str, settings: &DatabaseSettings) -> anyhow::Result<Database> {
    if let Some(path) = settings.url.strip_prefix("sqlite://") {
        let path = path.split('?').next().unwrap_or(path);
        anyhow::ensure!(
            Path::new(path).exists(),
            "no database at {path} (database.url): point it at the database of {name}"
        );
    }
    Database::connect(settings)
        .await
        .with_context(|| format!("cannot connect to the database of {name} (database.url)"))
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

fn print_summary(name: &str, summary: &RebuildSummary, output: OutputFormat) -> anyhow::Result<()> {
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
                "generation {} is kept as previous; `eventline rebuild {name} --rollback` makes it active again",
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

fn print_rollback(name: &str, summary: &RollbackSummary, output: OutputFormat) -> anyhow::Result<()> {
    if output == OutputFormat::Json {
        println!("{}", serde_json::to_string_pretty(summary)?);
        return Ok(());
    }
    println!(
        "generation {} is active again (tables {}, group {}); the running {name} switches to it \
         and catches up from that group's own offsets",
        summary.activated.generation,
        tables(&summary.activated),
        summary.activated.group_id
    );
    println!("generation {} is now previous; `eventline rebuild {name} --rollback` returns to it", summary.demoted);
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
