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
//! With `keys` (`key_order = "key"`), an event with a key that would be dead-lettered is handed to
//! [`Effects::block`] instead (which parks it as its key's head, dead-lettering it first when it
//! failed permanently), and the later events of its key still queued are taken out and
//! [parked](Effects::park): they are not handed to the handler before it.
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
use super::context::Shared;
use super::dead_letter::DeadLetterReason;
use super::handler::{Batch, Delivered, Handler, HandlerError, PauseScope, Positions};
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

    /// A handler call applied `events`; the partition continues at `next_offset`.
    fn applied(&mut self, next_offset: i64, events: &[Delivered]);

    /// What a handler call of `events` saves; by default, that the partition continues at
    /// `position`.
    fn positions(&self, position: PartitionOffset, _events: &[Delivered]) -> Positions {
        Positions::new(vec![position], Vec::new())
    }

    /// With `keys`: `event` (which has a key) failed for good in-line; its key blocks. By
    /// default it is dead-lettered like without `keys`.
    fn block(
        &mut self,
        event: &Delivered,
        reason: DeadLetterReason,
        error: String,
        attempts: u32,
    ) -> impl Future<Output = Result<(), Stopped>> + Send {
        self.dead_letter(event, reason, error, attempts)
    }

    /// With `keys`: later events of a key that just blocked, taken out of the work, in order.
    fn park(&mut self, _events: Vec<Delivered>) -> impl Future<Output = Result<(), Stopped>> + Send {
        std::future::ready(Ok(()))
    }

    /// `events` were dropped as already applied (a duplicate answer).
    fn dropped(&mut self, _events: &[Delivered]) {}
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
    /// Block the key of an event that fails for good instead of dead-lettering it and moving on
    /// (`key_order = "key"`).
    pub keys: bool,
}

impl<'a, H: Handler> Executor<'a, H> {
    /// The executor of one partition of `shared`'s consumer.
    pub(crate) fn of_partition(
        handler: &'a H,
        shared: &'a Shared,
        stop: &'a CancellationToken,
        topic: &'a str,
        partition: i32,
        keys: bool,
    ) -> Self {
        Self {
            handler,
            policy: &shared.settings.retry,
            outage: &shared.settings.outage,
            outages: shared.progress.outages(),
            metrics: &shared.metrics,
            stop,
            group: &shared.group,
            topic,
            partition,
            keys,
        }
    }

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
            self.run_group(group, (next_offset, end), &mut attempts, &mut work, effects).await?;
        }
        Ok(())
    }

    async fn run_group<E: Effects>(
        &self,
        mut events: Vec<Delivered>,
        (next_offset, end): (i64, i64),
        attempts: &mut HashMap<i64, u32>,
        work: &mut VecDeque<Vec<Delivered>>,
        effects: &mut E,
    ) -> Result<(), Stopped> {
        let mut attempt = 0u32;
        let mut outage: Option<Pause<'_>> = None;
        loop {
            self.outages.pass_gate(outage.as_ref(), self.site(), self.stop).await?;
            let mut position = PartitionOffset { topic: self.topic.to_owned(), partition: self.partition, next_offset };
            let positions = effects.positions(position.clone(), &events);
            if positions.offsets().is_empty() {
                // Released parked events: the partition is at `end` already.
                position.next_offset = end;
            }
            let (result, returned) = self.call(events, position, positions, attempt + 1).await;
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
                    effects.applied(next_offset, &events);
                    return Ok(());
                }
                Err(error) => error,
            };
            let at = error.offset().and_then(|offset| events.iter().position(|e| e.offset == offset));
            let (reason, source) = match error {
                HandlerError::Duplicate { .. } => {
                    match at {
                        Some(index) => {
                            let dropped = events.remove(index);
                            effects.dropped(std::slice::from_ref(&dropped));
                            self.metrics.duplicate.inc();
                            push_front(work, events);
                        }
                        None => {
                            effects.dropped(&events);
                            self.metrics.duplicate.inc_by(count as u64);
                        }
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
                    push_front(work, events);
                    match event.key.as_deref().filter(|_| self.keys) {
                        Some(key) => {
                            effects.block(&event, reason, format!("{source:#}"), tried).await?;
                            let later = take_later_of_key(work, key, event.offset);
                            if !later.is_empty() {
                                effects.park(later).await?;
                            }
                        }
                        None => effects.dead_letter(&event, reason, format!("{source:#}"), tried).await?,
                    }
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
        position: PartitionOffset,
        positions: Positions,
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
        let batch = Batch::new(self.group.clone(), events, position, positions);
        let started = Instant::now();
        let result = self.handler.handle(&batch).instrument(span).await;
        self.metrics.handler_duration.observe(started.elapsed().as_secs_f64());
        (result, batch.into_events())
    }
}

/// Takes the events of `key` after `offset` out of `work` (dropping groups left empty), in order.
fn take_later_of_key(work: &mut VecDeque<Vec<Delivered>>, key: &str, offset: i64) -> Vec<Delivered> {
    let mut later = Vec::new();
    for group in work.iter_mut() {
        let (taken, kept): (Vec<Delivered>, Vec<Delivered>) =
            std::mem::take(group).into_iter().partition(|e| e.offset > offset && e.key.as_deref() == Some(key));
        later.extend(taken);
        *group = kept;
    }
    work.retain(|group| !group.is_empty());
    later.sort_by_key(|e| e.offset);
    later
}

fn push_front(work: &mut VecDeque<Vec<Delivered>>, events: Vec<Delivered>) {
    if !events.is_empty() {
        work.push_front(events);
    }
}

#[cfg(test)]
#[path = "retry_tests.rs"]
mod tests;
