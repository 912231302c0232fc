//! How `dlq` results look: lines for people, JSON for scripts (`--output json`).

use std::collections::BTreeMap;

use super::list::{DeadLetterDetail, DlqListing};
use super::model::{DeadLetter, LetterStatus};
use super::redrive::{PlannedRedrive, RedriveOutcome, RedriveProgress};
use crate::commands::publish::OutputFormat;
use crate::commands::tail::short_name;

/// A listed error is cut to this many characters (`dlq show` has all of it).
const SHORT_ERROR: usize = 80;
/// Bytes per line of a hex dump.
const HEX_PER_LINE: usize = 32;

pub(super) fn listing(listing: &DlqListing, output: OutputFormat) -> anyhow::Result<()> {
    if output == OutputFormat::Json {
        println!("{}", serde_json::to_string_pretty(listing)?);
        return Ok(());
    }
    println!("{} (group {})", listing.dlq_topic, listing.group);
    for letter in &listing.letters {
        println!("{}", line(letter));
    }
    let summary = &listing.summary;
    let reasons: Vec<String> = summary.by_reason.iter().map(|(reason, count)| format!("{reason} {count}")).collect();
    let mut last = format!(
        "{} dead letter{}: {} pending, {} redriven",
        summary.total,
        if summary.total == 1 { "" } else { "s" },
        summary.pending,
        summary.redriven
    );
    if !reasons.is_empty() {
        last.push_str(&format!("; by reason: {}", reasons.join(", ")));
    }
    println!("{last}");
    if listing.unreadable_markers > 0 {
        println!("note: {} redrive markers could not be read", listing.unreadable_markers);
    }
    Ok(())
}

fn optional<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn event_name(letter_type: Option<&str>) -> &str {
    letter_type.map_or("-", short_name)
}

/// `orders/1@7`: topic, partition and offset the letter came from.
fn origin(letter: &DeadLetter) -> String {
    format!(
        "{}/{}@{}",
        letter.original_topic.as_deref().unwrap_or("-"),
        optional(letter.original_partition),
        optional(letter.original_offset)
    )
}

/// `pending`, or `redriven (to T@p:o at time)`.
fn status(letter: &DeadLetter) -> String {
    match (letter.status, letter.last_redrive()) {
        (LetterStatus::Redriven, Some(last)) => {
            let times = match letter.redrives.len() {
                1 => String::new(),
                n => format!(", {n} times"),
            };
            format!(
                "redriven (to {}@{}:{} at {}{times})",
                last.target_topic,
                last.target_partition,
                last.target_offset,
                last.redriven_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            )
        }
        _ => "pending".to_owned(),
    }
}

fn shortened(error: &str) -> String {
    let one_line = error.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(SHORT_ERROR) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None => one_line,
    }
}

fn line(letter: &DeadLetter) -> String {
    format!(
        "{}:{}  {}  id={}  key={}  from={}  reason={}  attempts={}  at={}  {}  error: {}",
        letter.id.partition,
        letter.id.offset,
        event_name(letter.event_type.as_deref()),
        optional(letter.event_id.as_deref()),
        optional(letter.key.as_deref()),
        origin(letter),
        optional(letter.reason.as_deref()),
        optional(letter.attempts),
        optional(letter.dead_lettered_at.as_deref()),
        status(letter),
        letter.error.as_deref().map_or_else(|| "-".to_owned(), shortened),
    )
}

pub(super) fn detail(detail: &DeadLetterDetail, output: OutputFormat) -> anyhow::Result<()> {
    if output == OutputFormat::Json {
        println!("{}", serde_json::to_string_pretty(detail)?);
        return Ok(());
    }
    let letter = &detail.letter;
    println!("dead letter {}", letter.id);
    println!("status:   {}", status(letter));
    println!(
        "event:    {} id={} key={}",
        event_name(letter.event_type.as_deref()),
        optional(letter.event_id.as_deref()),
        optional(letter.key.as_deref())
    );
    println!("from:     {} (group {})", origin(letter), optional(letter.group.as_deref()));
    println!(
        "reason:   {} after {} attempts, at {}",
        optional(letter.reason.as_deref()),
        optional(letter.attempts),
        optional(letter.dead_lettered_at.as_deref())
    );
    if let Some(from) = &letter.redriven_from {
        println!("redriven from {from} before failing again");
    }
    println!("error:\n  {}", letter.error.as_deref().unwrap_or("-").replace('\n', "\n  "));
    for redrive in &letter.redrives {
        println!(
            "redriven to {}@{}:{} at {}",
            redrive.target_topic,
            redrive.target_partition,
            redrive.target_offset,
            redrive.redriven_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        );
    }
    println!("headers:");
    for header in &detail.headers {
        println!("  {}: {}", header.name, header.value.as_deref().unwrap_or("(no value)"));
    }
    match (&detail.value, &detail.undecodable) {
        (Some(value), _) => {
            println!("value (decoded with its writer schema):");
            println!("  {}", serde_json::to_string_pretty(value)?.replace('\n', "\n  "));
        }
        (None, Some(undecodable)) => {
            println!("value: cannot be decoded: {}", undecodable.reason);
            let shown = undecodable.hex.split(' ').filter(|b| !b.is_empty()).count();
            println!(
                "bytes ({} in all{}):",
                undecodable.size,
                if undecodable.truncated { format!(", the first {shown} shown") } else { String::new() }
            );
            let bytes: Vec<&str> = undecodable.hex.split(' ').filter(|b| !b.is_empty()).collect();
            for chunk in bytes.chunks(HEX_PER_LINE) {
                println!("  {}", chunk.join(" "));
            }
        }
        (None, None) => println!("value: none"),
    }
    Ok(())
}

/// Progress on standard error, once a redrive has lasted a second.
pub(super) fn progress(progress: &RedriveProgress) {
    if progress.elapsed_seconds < 1.0 {
        return;
    }
    let left = progress.remaining_seconds.map_or_else(String::new, |s| format!(", about {s:.0}s left"));
    let failed = if progress.failed > 0 { format!(", {} failed", progress.failed) } else { String::new() };
    eprintln!("redrive: {} of {} sent{failed}, {:.0}/s{left}", progress.sent, progress.total, progress.per_second);
}

fn planned_line(plan: &PlannedRedrive) -> String {
    let target = match plan.target_partition {
        Some(partition) => format!("{} partition {partition}", plan.target_topic),
        None => plan.target_topic.clone(),
    };
    format!(
        "{}  {}  id={}  key={}  → {target}",
        plan.letter,
        event_name(plan.event_type.as_deref()),
        optional(plan.event_id.as_deref()),
        optional(plan.key.as_deref())
    )
}

fn per_topic(counts: &BTreeMap<String, usize>) -> String {
    if counts.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = counts.iter().map(|(topic, count)| format!("{topic}: {count}")).collect();
    format!(" ({})", parts.join(", "))
}

pub(super) fn outcome(outcome: &RedriveOutcome, output: OutputFormat) -> anyhow::Result<()> {
    if output == OutputFormat::Json {
        println!("{}", serde_json::to_string_pretty(outcome)?);
        return Ok(());
    }
    if !outcome.executed {
        println!("dry run: nothing was sent (add --execute to send)");
        for plan in &outcome.planned {
            println!("would send {}", planned_line(plan));
        }
        if !outcome.skipped.is_empty() {
            let skipped: Vec<String> = outcome.skipped.iter().map(ToString::to_string).collect();
            println!("skipped, redriven before (--again sends them anyway): {}", skipped.join(", "));
        }
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for plan in &outcome.planned {
            *counts.entry(plan.target_topic.clone()).or_default() += 1;
        }
        println!("{} to send{}, {} skipped", outcome.planned.len(), per_topic(&counts), outcome.skipped.len());
        return Ok(());
    }
    for failed in &outcome.failed {
        println!("failed {} → {}: {}", failed.letter, failed.target_topic, failed.error);
    }
    for letter in &outcome.unrecorded {
        println!("sent {letter}, but its redrive marker could not be written: a re-run sends it again");
    }
    println!(
        "sent {}{}, skipped {} (already redriven), failed {}{}",
        outcome.sent.len(),
        per_topic(&outcome.sent_per_topic),
        outcome.skipped.len(),
        outcome.failed.len(),
        if outcome.interrupted {
            format!(", not reached {}", outcome.planned.len().saturating_sub(outcome.sent.len() + outcome.failed.len()))
        } else {
            String::new()
        }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_cut_to_one_short_line() {
        assert_eq!(shortened("boom:\n  caused by x"), "boom: caused by x");
        let long = "x".repeat(SHORT_ERROR + 5);
        let cut = shortened(&long);
        assert_eq!(cut.chars().count(), SHORT_ERROR + 1);
        assert!(cut.ends_with('…'));
    }
}
