//! `eventline dlq list|show|redrive`: a consumer group's dead letters, what they carry and why
//! they failed, and sending them back once the cause is fixed.
//!
//! - `list --group G`: one line per dead letter, with its status (`pending`, or `redriven` and
//!   where to), read from the marker topic `<dlq topic>.redrives`.
//! - `show --group G OFFSET`: every header, the event decoded through the registry as JSON (or
//!   why it cannot be, with its bytes in hex), the full error.
//! - `redrive --group G (--all | --offsets A..B | --type T)`: a dry run unless `--execute`; by
//!   default to the group's retry topic `<group>.retry` (only that group sees the events again),
//!   or `--to original`. Letters redriven before are skipped unless `--again`, so an interrupted
//!   redrive continues where it stopped when run again.
//!
//! The functions ([`list`], [`show`], [`redrive`]) take and return serde types so the admin
//! HTTP API can call them too; `run` only parses, calls and prints.

mod error;
mod list;
mod model;
mod print;
mod read;
mod redrive;
mod select;

use std::path::Path;

use anyhow::Context;
use clap::{ArgGroup, Args, Subcommand};
use eventline_common::catalog::Catalog;
use eventline_common::config::Section;
use eventline_common::kafka::connection::{check_connection, CONNECT_TIMEOUT};
use eventline_common::kafka::KafkaSettings;
use eventline_common::registry_client::{RegistryClient, SchemaRegistrySettings};
use tokio_util::sync::CancellationToken;

pub use error::DlqError;
pub use list::{
    list, show, DeadLetterDetail, DlqListing, HeaderEntry, ListQuery, ListSummary, ShowQuery, Undecodable, HEX_LIMIT,
};
pub use model::{DeadLetter, LetterId, LetterStatus, OffsetRange, OffsetRangeError, RedriveMarker, MARKER_SUFFIX};
pub use read::marker_topic;
pub use redrive::{
    redrive, FailedRedrive, PlannedRedrive, RedriveOutcome, RedriveProgress, RedriveRequest, Selection, Target,
    PROGRESS_EVERY,
};

use super::publish::OutputFormat;

#[derive(Debug, Args)]
pub struct DlqArgs {
    #[command(subcommand)]
    pub command: DlqCommand,
}

/// What every `dlq` command needs: the group, where its dead letters are, the output format.
#[derive(Debug, Args)]
pub struct GroupArgs {
    /// The consumer group whose dead letters these are.
    #[arg(long)]
    pub group: String,
    /// The group's dead-letter topic, when it is not `<group>.dlq`.
    #[arg(long)]
    pub dlq_topic: Option<String>,
    /// `text` (default) or `json` for scripts.
    #[arg(long, default_value = "text")]
    pub output: OutputFormat,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// One line per dead letter: event, origin, reason, attempts, error and redrive status.
    List {
        #[command(flatten)]
        group: GroupArgs,
        /// Only letters of this event type (`OrderPlaced` or the full name).
        #[arg(long = "type")]
        event_type: Option<String>,
        /// Only this partition of the dead-letter topic (it has one unless configured otherwise).
        #[arg(long)]
        partition: Option<i32>,
        /// From this offset of the dead-letter topic.
        #[arg(long)]
        from_offset: Option<i64>,
        /// Up to this offset, included.
        #[arg(long)]
        to_offset: Option<i64>,
    },
    /// One dead letter: every header, the event decoded as JSON, the full error.
    Show {
        #[command(flatten)]
        group: GroupArgs,
        /// The letter's offset in the dead-letter topic (`dlq list` shows it).
        offset: i64,
        #[arg(long, default_value_t = 0)]
        partition: i32,
    },
    /// Send dead letters back (a dry run unless --execute).
    Redrive(RedriveArgs),
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("selection").required(true).args(["all", "offsets", "event_type"])))]
pub struct RedriveArgs {
    #[command(flatten)]
    pub group: GroupArgs,
    /// Every dead letter of the group.
    #[arg(long)]
    pub all: bool,
    /// The letters at these offsets: `A..B` (both included), `A..` (to the end) or `A`.
    #[arg(long, value_name = "A..B")]
    pub offsets: Option<OffsetRange>,
    /// The letters of this event type (`OrderPlaced` or the full name).
    #[arg(long = "type")]
    pub event_type: Option<String>,
    /// The partition of the dead-letter topic that --offsets are in.
    #[arg(long)]
    pub partition: Option<i32>,
    /// `retry`: the group's retry topic, only this group sees the events again; `original`: the
    /// topic they failed on, every group reading it sees them again.
    #[arg(long, value_enum, default_value = "retry")]
    pub to: Target,
    /// The group's retry topic, when it is not `<group>.retry`.
    #[arg(long)]
    pub retry_topic: Option<String>,
    /// Also send letters that were redriven before.
    #[arg(long)]
    pub again: bool,
    /// Send for real; without it, only show what would be sent where.
    #[arg(long)]
    pub execute: bool,
}

impl RedriveArgs {
    fn request(&self) -> RedriveRequest {
        let select = match (&self.offsets, &self.event_type) {
            (Some(range), _) => Selection::Offsets { range: *range, partition: self.partition },
            (None, Some(event_type)) => Selection::EventType(event_type.clone()),
            (None, None) => Selection::All,
        };
        RedriveRequest {
            group: self.group.group.clone(),
            dlq_topic: self.group.dlq_topic.clone(),
            select,
            to: self.to,
            retry_topic: self.retry_topic.clone(),
            again: self.again,
            execute: self.execute,
        }
    }
}

pub async fn run(config_file: Option<&Path>, args: DlqArgs) -> anyhow::Result<()> {
    let source = crate::services::config(config_file)?;
    let kafka: KafkaSettings = source.section(Section::Kafka)?;
    check_connection(&kafka, CONNECT_TIMEOUT).await?;
    let catalog = Catalog::embedded().context("the embedded catalog is invalid")?;
    match args.command {
        DlqCommand::List { group, event_type, partition, from_offset, to_offset } => {
            let query = ListQuery {
                group: group.group,
                dlq_topic: group.dlq_topic,
                event_type,
                partition,
                from_offset,
                to_offset,
            };
            print::listing(&list(&kafka, &catalog, &query).await?, group.output)
        }
        DlqCommand::Show { group, offset, partition } => {
            let registry: SchemaRegistrySettings = source.section(Section::SchemaRegistry)?;
            let registry = RegistryClient::new(&registry)?;
            let query = ShowQuery { group: group.group, dlq_topic: group.dlq_topic, partition, offset };
            print::detail(&show(&kafka, &registry, &query).await?, group.output)
        }
        DlqCommand::Redrive(args) => {
            let request = args.request();
            let stop = CancellationToken::new();
            let on_ctrl_c = stop.clone();
            let watcher = tokio::spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    eprintln!("stopping after the record in flight…");
                    on_ctrl_c.cancel();
                }
            });
            let outcome = redrive(&kafka, &catalog, &request, print::progress, stop).await;
            watcher.abort();
            let outcome = outcome?;
            print::outcome(&outcome, args.group.output)?;
            if outcome.interrupted {
                anyhow::bail!(
                    "interrupted: {} sent before stopping; run the same command again to send the rest",
                    outcome.sent.len()
                );
            }
            if !outcome.failed.is_empty() {
                anyhow::bail!("{} of {} dead letters could not be sent", outcome.failed.len(), outcome.planned.len());
            }
            Ok(())
        }
    }
}
