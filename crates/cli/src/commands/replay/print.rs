//! How replay shows plans and outcomes: a table for people, one JSON document for scripts.

use serde::Serialize;

use super::execute::{KafkaCopy, ReplayOutcome};
use super::members::MemberStatus;
use super::plan::ReplayPlan;
use super::wait::{WaitEnd, WaitProgress};
use crate::commands::groups::OffsetsFrom;
use crate::commands::publish::OutputFormat;

/// Said after every dry run.
pub const DRY_RUN: &str = "dry run: nothing changed; add --execute to apply";

/// The JSON document: the plan and, when executed, the outcome.
#[derive(Serialize)]
struct Report<'a> {
    dry_run: bool,
    plan: &'a ReplayPlan,
    outcome: Option<&'a ReplayOutcome>,
}

/// Prints the whole report: the plan (text: with the dry-run line) or the JSON document.
pub(super) fn report(plan: &ReplayPlan, outcome: Option<&ReplayOutcome>, output: OutputFormat) -> anyhow::Result<()> {
    match output {
        OutputFormat::Json => {
            println!("{}", serde_json::to_string_pretty(&Report { dry_run: outcome.is_none(), plan, outcome })?);
        }
        OutputFormat::Text => {
            self::plan(plan);
            match outcome {
                Some(outcome) => self::outcome(outcome),
                None => println!("{DRY_RUN}"),
            }
        }
    }
    Ok(())
}

fn offsets_in(from: OffsetsFrom) -> &'static str {
    match from {
        OffsetsFrom::Database => "the database (transactional offset store; Kafka holds a trailing copy)",
        OffsetsFrom::Kafka => "Kafka (committed offsets)",
    }
}

/// The width of the topic column: the longest name, at least the header's.
fn topic_width<'a>(topics: impl Iterator<Item = &'a str>) -> usize {
    topics.map(str::len).max().unwrap_or_default().max("topic".len())
}

fn offset(offset: Option<i64>) -> String {
    offset.map_or_else(|| "none".to_owned(), |o| o.to_string())
}

pub(super) fn plan(plan: &ReplayPlan) {
    println!("replay plan for group {}: reset to {}", plan.group, plan.target);
    println!("offsets live in {}", offsets_in(plan.offsets_in));
    let width = topic_width(plan.partitions.iter().map(|p| p.topic.as_str()));
    println!(
        "{:<width$} {:>9} {:>10} {:>10} {:>10} {:>10} {:>9} {:>9}",
        "topic", "partition", "current", "target", "log start", "log end", "re-read", "skip"
    );
    for p in &plan.partitions {
        println!(
            "{:<width$} {:>9} {:>10} {:>10} {:>10} {:>10} {:>9} {:>9}",
            p.topic,
            p.partition,
            offset(p.current),
            p.target,
            p.log_start,
            p.log_end,
            p.to_reread,
            p.to_skip
        );
    }
    let totals = &plan.totals;
    println!(
        "total: {} partition(s), {} event(s) to re-read, {} to skip",
        totals.partitions, totals.to_reread, totals.to_skip
    );
    for p in plan.partitions.iter().filter(|p| p.clamped_from.is_some()) {
        let asked = p.clamped_from.unwrap_or_default();
        let bound = if asked < p.log_start { "log start" } else { "log end" };
        println!(
            "clamped: {} partition {}: the shift asked for offset {asked}; set to the {bound}, {}",
            p.topic, p.partition, p.target
        );
    }
    let members = &plan.members;
    match members.status {
        MemberStatus::NoneLive => println!("members: none live ({})", members.detail),
        MemberStatus::Live => {
            let names: Vec<String> = members.members.iter().map(ToString::to_string).collect();
            println!("members: LIVE: {} ({}); --execute is refused until they stop", names.join("; "), members.detail);
        }
        MemberStatus::Unknown if plan.members_stopped => {
            println!("members: unknown ({}); you said they are stopped (--members-stopped)", members.detail)
        }
        MemberStatus::Unknown => {
            println!(
                "members: unknown ({}); --execute needs --members-stopped once its consumers are stopped",
                members.detail
            )
        }
    }
    for note in &plan.notes {
        println!("note: {note}");
    }
}

pub(super) fn outcome(outcome: &ReplayOutcome) {
    let place = match outcome.offsets_in {
        OffsetsFrom::Database => "the database",
        OffsetsFrom::Kafka => "Kafka",
    };
    println!("executed: offsets written to {place}; read back:");
    let width = topic_width(outcome.partitions.iter().map(|p| p.topic.as_str()));
    println!("{:<width$} {:>9} {:>10} {:>10} {:>10}", "topic", "partition", "before", "target", "now");
    for p in &outcome.partitions {
        let mark = if p.after == Some(p.target) { "" } else { "  <- differs from the target" };
        println!(
            "{:<width$} {:>9} {:>10} {:>10} {:>10}{mark}",
            p.topic,
            p.partition,
            offset(p.before),
            p.target,
            offset(p.after)
        );
    }
    match &outcome.kafka_copy {
        Some(KafkaCopy::Committed) => println!("kafka copy: committed"),
        Some(KafkaCopy::Failed(reason)) => {
            println!("kafka copy: NOT committed ({reason}); the database offsets are the ones that count")
        }
        None => {}
    }
    if outcome.verified {
        println!("done: {} partition(s) now at their targets", outcome.partitions.len());
    }
}

pub(super) fn progress(progress: &WaitProgress, output: OutputFormat) {
    let line = match progress.eta_seconds {
        Some(eta) => format!(
            "re-read {} of {} events, {:.0}/s, about {:.0}s left",
            progress.read, progress.total, progress.rate_per_second, eta
        ),
        None => format!("re-read {} of {} events", progress.read, progress.total),
    };
    match output {
        OutputFormat::Text => println!("{line}"),
        // stdout carries the one JSON document; progress goes to stderr.
        OutputFormat::Json => eprintln!("{line}"),
    }
}

pub(super) fn wait_end(end: WaitEnd, output: OutputFormat) {
    let line = match end {
        WaitEnd::CaughtUp => "caught up: the group reached the log ends recorded in the plan",
        WaitEnd::Stopped => "stopped waiting (Ctrl-C); the reset is done and stays, the group keeps consuming",
    };
    match output {
        OutputFormat::Text => println!("{line}"),
        OutputFormat::Json => eprintln!("{line}"),
    }
}
