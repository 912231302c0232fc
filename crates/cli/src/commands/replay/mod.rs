//! `eventline replay`: reset a consumer group's offsets (to the earliest or latest offset, a
//! date-time, a shift, or an exact offset), always with a plan first, applied only with
//! `--execute` and only while nobody consumes.
//!
//! Groups in the transactional offset mode keep their offsets in the database's offset store;
//! they are reset there (one transaction) and copied to Kafka as the trailing copy. Other groups
//! are reset in Kafka by committing for the group from outside it. The flag names follow Kafka's
//! `kafka-consumer-groups --reset-offsets` on purpose.
//!
//! The command only parses and prints; [`plan`] and [`execute`] are the library the admin API
//! calls too.

mod broker;
mod by_time;
mod error;
mod execute;
mod members;
mod plan;
mod print;
mod request;
mod wait;

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::{ArgGroup, Args};
use eventline_common::config::Section;
use eventline_common::db::DatabaseSettings;
use eventline_common::kafka::connection::{check_connection, CONNECT_TIMEOUT};
use eventline_common::kafka::KafkaSettings;

pub use error::ReplayError;
pub use execute::{execute, AppliedPartition, KafkaCopy, ReplayOutcome};
pub use members::{LiveMember, MemberCheck, MemberSource, MemberStatus};
pub use plan::{plan, PartitionPlan, PlanTotals, ReplayPlan, DATABASE_DEDUP_NOTE};
pub use request::{parse_datetime, ReplayRequest, ReplayTarget, TopicSelection};
pub use wait::{follow, WaitEnd, WaitProgress};

use super::groups;
use super::publish::OutputFormat;

/// How often `--wait` reports.
const WAIT_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("target")
        .required(true)
        .args(["to_earliest", "to_latest", "to_datetime", "shift_by", "to_offset"])
))]
pub struct ReplayArgs {
    /// The consumer group whose offsets to reset.
    #[arg(long)]
    pub group: String,
    /// TOPIC or TOPIC:PARTITION,PARTITION,… (repeatable); default: every topic the group has
    /// offsets on.
    #[arg(long = "topic", value_name = "TOPIC[:P,P…]", value_parser = parse_topic)]
    pub topics: Vec<TopicSelection>,
    /// Re-read everything still in the log.
    #[arg(long)]
    pub to_earliest: bool,
    /// Skip everything not read yet.
    #[arg(long)]
    pub to_latest: bool,
    /// The first event at or after this RFC 3339 date-time (e.g. 2026-05-01T12:00:00Z), by
    /// record timestamp; the end of the log when there is none.
    #[arg(long, value_name = "DATE-TIME", value_parser = parse_date_time)]
    pub to_datetime: Option<DateTime<Utc>>,
    /// Move by N per partition: negative re-reads N events, positive skips N (clamped to the log).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub shift_by: Option<i64>,
    /// Exactly offset N in every selected partition (must lie in the log).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub to_offset: Option<i64>,
    /// Apply the plan (without it: a dry run that changes nothing).
    #[arg(long)]
    pub execute: bool,
    /// You say the group's consumers are stopped: only needed when the broker cannot tell (it does
    /// not answer DescribeGroups, or the group uses the new consumer protocol, which DescribeGroups
    /// reports as `Dead`). Members the broker or the database reports live are never overridden.
    #[arg(long)]
    pub members_stopped: bool,
    /// After executing, follow the group until it is back at the end; Ctrl-C stops waiting only.
    #[arg(long, requires = "execute")]
    pub wait: bool,
    /// `text` (default) or `json` for scripts.
    #[arg(long, default_value = "text")]
    pub output: OutputFormat,
}

fn parse_topic(text: &str) -> Result<TopicSelection, String> {
    text.parse().map_err(|e: ReplayError| e.to_string())
}

fn parse_date_time(text: &str) -> Result<DateTime<Utc>, String> {
    parse_datetime(text).map_err(|e| e.to_string())
}

impl ReplayArgs {
    /// The request these flags make (clap has checked that exactly one target is given).
    pub fn request(&self) -> anyhow::Result<ReplayRequest> {
        let target = match (self.to_earliest, self.to_latest, self.to_datetime, self.shift_by, self.to_offset) {
            (true, ..) => ReplayTarget::ToEarliest,
            (_, true, ..) => ReplayTarget::ToLatest,
            (_, _, Some(time), ..) => ReplayTarget::ToDatetime(time),
            (_, _, _, Some(shift), _) => ReplayTarget::ShiftBy(shift),
            (.., Some(offset)) => ReplayTarget::ToOffset(offset),
            _ => anyhow::bail!(
                "no target: give one of --to-earliest, --to-latest, --to-datetime, --shift-by, --to-offset"
            ),
        };
        Ok(ReplayRequest {
            group: self.group.clone(),
            topics: self.topics.clone(),
            target,
            members_stopped: self.members_stopped,
        })
    }
}

pub async fn run(config_file: Option<&Path>, args: ReplayArgs) -> anyhow::Result<()> {
    let request = args.request()?;
    let source = crate::services::config(config_file)?;
    let kafka: KafkaSettings = source.section(Section::Kafka)?;
    check_connection(&kafka, CONNECT_TIMEOUT).await?;
    let database: DatabaseSettings = source.section(Section::Database)?;
    let store = match groups::open_store(&database).await {
        Ok(store) => Some(store),
        // No database file yet: nothing can have offsets there.
        Err(_) if groups::missing_sqlite_file(&database).is_some() => None,
        Err(reason) => anyhow::bail!(
            "cannot open the database ({reason}); transactional groups keep their offsets there, so replay \
             cannot tell where group `{}`'s offsets live",
            request.group
        ),
    };
    let plan = plan(&kafka, store.as_ref(), &request).await?;
    let output = args.output;
    if !args.execute {
        return print::report(&plan, None, output);
    }
    if output == OutputFormat::Text {
        print::plan(&plan);
    }
    let outcome = execute(&kafka, store.as_ref(), &plan).await?;
    if output == OutputFormat::Text {
        print::outcome(&outcome);
    } else {
        print::report(&plan, Some(&outcome), output)?;
    }
    if !outcome.verified {
        anyhow::bail!("the offsets read back differ from the plan's targets (see above): did a consumer of group `{}` commit meanwhile?", plan.group);
    }
    if args.wait {
        let stop = async {
            let _ctrl_c = tokio::signal::ctrl_c().await;
        };
        let end =
            follow(&kafka, store.as_ref(), &plan, WAIT_INTERVAL, stop, |progress| print::progress(progress, output))
                .await
                .context("cannot follow the group's progress")?;
        print::wait_end(end, output);
    }
    Ok(())
}
