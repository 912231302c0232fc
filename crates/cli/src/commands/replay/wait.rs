//! `--wait`: after a reset, follow the group until it is back at the log ends the plan saw,
//! reporting how much of the way it has come, its rate and the time left.

use std::future::Future;
use std::time::{Duration, Instant};

use eventline_common::kafka::consumer::OffsetStore;
use eventline_common::kafka::KafkaSettings;
use serde::Serialize;

use super::broker::GroupClient;
use super::error::ReplayError;
use super::execute::read_offsets;
use super::plan::ReplayPlan;

/// How far the group is between its targets and the plan's log ends.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WaitProgress {
    /// Events read since the reset (up to the plan's log ends).
    pub read: i64,
    /// Events between the targets and the plan's log ends.
    pub total: i64,
    pub rate_per_second: f64,
    /// `None` until there is a rate.
    pub eta_seconds: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitEnd {
    /// Every partition reached the log end recorded in the plan.
    CaughtUp,
    /// `stop` fired first (Ctrl-C); the reset stands.
    Stopped,
}

/// Reads the group's offsets every `interval` and calls `report` with the progress, until every
/// partition reached the plan's log end or `stop` resolves.
pub async fn follow(
    kafka: &KafkaSettings,
    store: Option<&OffsetStore>,
    plan: &ReplayPlan,
    interval: Duration,
    stop: impl Future<Output = ()>,
    mut report: impl FnMut(&WaitProgress),
) -> Result<WaitEnd, ReplayError> {
    let client = GroupClient::new(kafka, &plan.group)?;
    let partitions: Vec<_> = plan.partitions.iter().map(|p| (p.topic.clone(), p.partition)).collect();
    let started = Instant::now();
    let mut first_read = None;
    tokio::pin!(stop);
    loop {
        let offsets = read_offsets(plan.offsets_in, &plan.group, store, &client, partitions.clone()).await?;
        let (read, total) = progress(plan, |topic, partition| offsets.get(&(topic.to_owned(), partition)).copied());
        let since = read - *first_read.get_or_insert(read);
        let seconds = started.elapsed().as_secs_f64();
        let rate_per_second = if seconds > 0.0 { since as f64 / seconds } else { 0.0 };
        let eta_seconds = (rate_per_second > 0.0).then(|| (total - read) as f64 / rate_per_second);
        report(&WaitProgress { read, total, rate_per_second, eta_seconds });
        if read >= total {
            return Ok(WaitEnd::CaughtUp);
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = &mut stop => return Ok(WaitEnd::Stopped),
        }
    }
}

/// (events read since the reset, events to read) over the plan's partitions, given where each
/// partition is now.
fn progress(plan: &ReplayPlan, now_at: impl Fn(&str, i32) -> Option<i64>) -> (i64, i64) {
    let mut read = 0;
    let mut total = 0;
    for p in &plan.partitions {
        let goal = (p.log_end - p.target).max(0);
        let done = now_at(&p.topic, p.partition).map_or(0, |at| (at.min(p.log_end) - p.target).clamp(0, goal));
        read += done;
        total += goal;
    }
    (read, total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::groups::OffsetsFrom;
    use crate::commands::replay::members::{MemberCheck, MemberSource, MemberStatus};
    use crate::commands::replay::plan::{PartitionPlan, PlanTotals};
    use crate::commands::replay::request::ReplayTarget;

    fn partition(partition: i32, target: i64, log_end: i64) -> PartitionPlan {
        PartitionPlan {
            topic: "t".into(),
            partition,
            current: Some(log_end),
            target,
            log_start: 0,
            log_end,
            to_reread: log_end - target,
            to_skip: 0,
            clamped_from: None,
        }
    }

    #[test]
    fn progress_counts_from_the_targets_to_the_planned_ends_only() {
        let plan = ReplayPlan {
            group: "g".into(),
            target: ReplayTarget::ToEarliest,
            offsets_in: OffsetsFrom::Kafka,
            partitions: vec![partition(0, 0, 10), partition(1, 5, 8), partition(2, 3, 3)],
            totals: PlanTotals { partitions: 3, to_reread: 13, to_skip: 0 },
            members: MemberCheck {
                source: MemberSource::Broker,
                status: MemberStatus::NoneLive,
                members: Vec::new(),
                detail: String::new(),
            },
            members_stopped: false,
            notes: Vec::new(),
        };
        assert_eq!(progress(&plan, |_, _| None), (0, 13));
        let at = |_: &str, p: i32| Some([4, 20, 3][usize::try_from(p).unwrap_or(0)]);
        assert_eq!(progress(&plan, at), (4 + 3, 13), "events past the planned end do not count");
        let done = |_: &str, p: i32| Some([10, 8, 3][usize::try_from(p).unwrap_or(0)]);
        assert_eq!(progress(&plan, done), (13, 13));
    }
}
