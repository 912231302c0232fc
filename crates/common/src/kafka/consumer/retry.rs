//! Applying the decoded events of one partition batch with the handler: retries with backoff,
//! and isolating the event at fault so one bad event does not dead-letter its batch.
//!
//! The events are worked off as a queue of groups, first the whole batch. For each group:
//! - `Ok` → done;
//! - `Retryable` → back off and call again, up to `max_attempts` calls; then the event the
//!   error names is dead-lettered (`retries_exhausted`) and the rest is a new group, or, when
//!   no event was named, every event becomes a group of its own (with a fresh retry budget), so
//!   only the ones that keep failing are dead-lettered;
//! - `Permanent` → the named event is dead-lettered (`permanent`) and the rest is a new group;
//!   unnamed, the events are tried one by one;
//! - `Duplicate` → the named event (or the whole group) is dropped as already applied;
//! - `Unavailable` → the dependency is down, not the events: wait ([`OutagePolicy`] backoff)
//!   and call again with the same group, as long as it takes, spending no attempts (neither the
//!   group's nor its events'); with [`PauseScope::Consumer`], other partitions wait at the
//!   consumer's gate meanwhile (see [`outage`](super::outage)).
//!
//! Before every call the group waits at the consumer's gate if another partition closed it.
//!
//! Each handler call carries the offset where the partition continues once it is applied: the
//! first offset of the next group, or the end of the batch for the last one. Events that never
//! reached a handler (skipped, dead-lettered while decoding) sit between and are covered by it.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::config::{OutagePolicy, RetryPolicy};
use super::dead_letter::DeadLetterReason;
use super::handler::{Batch, Delivered, Handler, HandlerError, PauseScope};
use super::metrics::GroupMetrics;
use super::offsets::PartitionOffset;
use super::outage::{Outages, Pause, Site};

/// The consumer is stopping (shutdown or revoke): leave the rest for the next owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stopped;

/// What the executor needs from its partition.
pub(crate) trait Effects: Send {
    /// Writes `event` to the dead-letter topic (retrying until it is acknowledged or stopped).
    fn dead_letter(
        &mut self,
        event: &Delivered,
        reason: DeadLetterReason,
        error: String,
        attempts: u32,
    ) -> impl Future<Output = Result<(), Stopped>> + Send;

    /// A handler call applied `count` events; the partition continues at `next_offset`.
    fn applied(&mut self, next_offset: i64, count: usize);
}

pub(crate) struct Executor<'a, H> {
    pub handler: &'a H,
    pub policy: &'a RetryPolicy,
    pub outage: &'a OutagePolicy,
    pub outages: &'a Outages,
    pub metrics: &'a GroupMetrics,
    pub stop: &'a CancellationToken,
    pub group: &'a Arc<str>,
    pub topic: &'a str,
    pub partition: i32,
}

impl<'a, H: Handler> Executor<'a, H> {
    /// Applies `events` (one partition, in offset order); `end` is the offset after the batch.
    pub(crate) async fn run<E: Effects>(
        &self,
        events: Vec<Delivered>,
        end: i64,
        effects: &mut E,
    ) -> Result<(), Stopped> {
        let mut attempts: HashMap<i64, u32> = HashMap::new();
        let mut work: VecDeque<Vec<Delivered>> = VecDeque::new();
        if !events.is_empty() {
            work.push_back(events);
        }
        while let Some(group) = work.pop_front() {
            let next_offset = work.front().and_then(|g| g.first()).map_or(end, |e| e.offset);
            self.run_group(group, next_offset, &mut attempts, &mut work, effects).await?;
        }
        Ok(())
    }

    async fn run_group<E: Effects>(
        &self,
        mut events: Vec<Delivered>,
        next_offset: i64,
        attempts: &mut HashMap<i64, u32>,
        work: &mut VecDeque<Vec<Delivered>>,
        effects: &mut E,
    ) -> Result<(), Stopped> {
        let mut attempt = 0u32;
        let mut outage: Option<Pause<'_>> = None;
        loop {
            self.outages.pass_gate(outage.as_ref(), self.site(), self.stop).await?;
            let (result, returned) = self.call(events, next_offset, attempt + 1).await;
            events = returned;
            if !matches!(result, Err(HandlerError::Unavailable { .. })) {
                if let Some(pause) = outage.take() {
                    pause.resume();
                }
                attempt += 1;
                for event in &events {
                    *attempts.entry(event.offset).or_default() += 1;
                }
            }
            let count = events.len();
            let error = match result {
                Ok(()) => {
                    self.metrics.handled.inc_by(count as u64);
                    effects.applied(next_offset, count);
                    return Ok(());
                }
                Err(error) => error,
            };
            let at = error.offset().and_then(|offset| events.iter().position(|e| e.offset == offset));
            let (reason, source) = match error {
                HandlerError::Duplicate { .. } => {
                    match at {
                        Some(index) => {
                            events.remove(index);
                            self.metrics.duplicate.inc();
                            push_front(work, events);
                        }
                        None => self.metrics.duplicate.inc_by(count as u64),
                    }
                    return Ok(());
                }
                HandlerError::Unavailable { dependency, scope, source } => {
                    self.wait_out(&mut outage, &dependency, scope, &source).await?;
                    continue;
                }
                HandlerError::Retryable { source, .. } if attempt < self.policy.max_attempts => {
                    self.metrics.retries.inc();
                    let delay = self.policy.backoff(attempt, rand::random::<f64>());
                    tracing::warn!(
                        group = %self.group, topic = self.topic, partition = self.partition,
                        attempt, events = count, retry_in = ?delay, error = %format!("{source:#}"),
                        "handler failed, retrying"
                    );
                    tokio::select! {
                        () = tokio::time::sleep(delay) => continue,
                        () = self.stop.cancelled() => return Err(Stopped),
                    }
                }
                HandlerError::Retryable { source, .. } => (DeadLetterReason::RetriesExhausted, source),
                HandlerError::Permanent { source, .. } => (DeadLetterReason::Permanent, source),
            };
            let isolated = match (at, count) {
                (Some(index), _) => Some(index),
                (None, 1) => Some(0),
                (None, _) => None,
            };
            match isolated {
                Some(index) => {
                    let event = events.remove(index);
                    let tried = attempts.get(&event.offset).copied().unwrap_or(attempt);
                    effects.dead_letter(&event, reason, format!("{source:#}"), tried).await?;
                    push_front(work, events);
                }
                None => {
                    tracing::info!(
                        group = %self.group, topic = self.topic, partition = self.partition, events = count,
                        reason = reason.as_str(), "batch failed without naming an event; trying its events one by one"
                    );
                    for event in events.into_iter().rev() {
                        work.push_front(vec![event]);
                    }
                }
            }
            return Ok(());
        }
    }

    /// After an "unavailable" answer: starts or continues the pause, then waits its backoff.
    async fn wait_out(
        &self,
        outage: &mut Option<Pause<'a>>,
        dependency: &str,
        scope: PauseScope,
        source: &anyhow::Error,
    ) -> Result<(), Stopped> {
        let calls = match outage {
            Some(pause) => pause.unavailable(dependency, scope, source, false),
            None => outage.insert(Pause::start(self.outages, self.site(), dependency, scope, source)).calls(),
        };
        let delay = self.outage.backoff(calls, rand::random::<f64>());
        tokio::select! {
            () = tokio::time::sleep(delay) => Ok(()),
            () = self.stop.cancelled() => Err(Stopped),
        }
    }

    fn site(&self) -> Site<'a> {
        Site { group: self.group, topic: self.topic, partition: self.partition, paused: &self.metrics.paused }
    }

    /// One handler call, in a span linked to the events' spans, timed.
    async fn call(
        &self,
        events: Vec<Delivered>,
        next_offset: i64,
        attempt: u32,
    ) -> (Result<(), HandlerError>, Vec<Delivered>) {
        let span = tracing::info_span!(
            "handle",
            group = %self.group,
            topic = self.topic,
            partition = self.partition,
            first_offset = events.first().map_or(-1, |e| e.offset),
            last_offset = events.last().map_or(-1, |e| e.offset),
            events = events.len(),
            attempt,
        );
        for event in &events {
            span.follows_from(event.span());
        }
        let position = PartitionOffset { topic: self.topic.to_owned(), partition: self.partition, next_offset };
        let batch = Batch::new(self.group.clone(), events, position);
        let started = Instant::now();
        let result = self.handler.handle(&batch).instrument(span).await;
        self.metrics.handler_duration.observe(started.elapsed().as_secs_f64());
        (result, batch.into_events())
    }
}

fn push_front(work: &mut VecDeque<Vec<Delivered>>, events: Vec<Delivered>) {
    if !events.is_empty() {
        work.push_front(events);
    }
}

#[cfg(test)]
#[path = "retry_tests.rs"]
mod tests;
