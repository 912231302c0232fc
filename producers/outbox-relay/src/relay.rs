//! The relay loop: claim a batch, publish it, record what happened, commit; then look again,
//! or wait for a notification, the poll interval, or a backoff.
//!
//! # Order per aggregate, with several relays
//!
//! Each batch claims whole aggregates with `pg_try_advisory_xact_lock(hashtextextended(
//! aggregate_id, <table oid>))` and only then locks and reads their pending rows (`FOR UPDATE`,
//! in id order). While one relay holds an aggregate, no other relay reads any of its rows, so
//! the rows a relay publishes are always the aggregate's oldest pending ones, and the next
//! holder starts after the previous one committed. Plain `FOR UPDATE SKIP LOCKED` on rows would
//! not do: a second relay could skip a locked row and publish its successor first. The claims
//! are transaction-scoped, so a crash releases them with the rollback; a hash collision between
//! two aggregates only makes them share a claim.
//!
//! Order is the id order, which is commit order for one aggregate as long as the upstream
//! serializes its writes to an aggregate (it does when the transaction that writes the outbox
//! row also updates the aggregate's own row, as `examples/upstream_service.rs` shows).
//!
//! # Delivery
//!
//! A row is marked published in the transaction that claimed it, after the broker acknowledged
//! it, so a crash in between leaves it pending and it is published again with the same event id
//! (consumers drop the duplicate). What each outcome means for a row and its aggregate is in
//! [`crate::domain::plan`].

use std::collections::HashSet;
use std::time::{Duration, Instant};

use eventline_common::kafka::producer::ProduceError;
use eventline_common::publish::{PreparedEvent, Publisher};
use rdkafka::types::RDKafkaErrorCode;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::RelayConfig;
use crate::domain::{plan, Backoff, Mark, Outcome, RowError};
use crate::metrics::{RejectReason, RelayMetrics};
use crate::store::{Store, StoreError};

/// How many of the oldest pending rows are looked at to choose a batch's aggregates, in batches.
const WINDOW_BATCHES: i64 = 4;
/// How long to wait when every pending aggregate is claimed by another relay.
const CONTENDED_PAUSE: Duration = Duration::from_millis(100);
const RETRY_INITIAL: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// The lag gauge is refreshed at most this often while rows flow (and whenever the relay idles).
const LAG_REFRESH: Duration = Duration::from_secs(1);

/// What one batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BatchReport {
    pub published: usize,
    pub rejected: usize,
    /// Not acknowledged by the broker: still pending.
    pub failed: usize,
    /// Acknowledged, but after a failed row of the same aggregate: still pending.
    pub held_back: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batch {
    /// No pending rows.
    Idle,
    /// Pending rows, but every one of their aggregates is claimed by another relay.
    Contended,
    Done(BatchReport),
}

pub struct Relay {
    store: Store,
    publisher: Publisher,
    metrics: RelayMetrics,
    config: RelayConfig,
}

impl Relay {
    pub fn new(store: Store, publisher: Publisher, metrics: RelayMetrics, config: RelayConfig) -> Self {
        Self { store, publisher, metrics, config }
    }

    /// Runs batches until `token` is cancelled; the batch in flight then finishes (published and
    /// recorded) before this returns. Database and broker failures are retried with backoff.
    pub async fn run(&self, wake: &Notify, token: &CancellationToken) {
        let mut backoff = Backoff::new(RETRY_INITIAL, RETRY_MAX);
        let mut lag_refreshed: Option<Instant> = None;
        while !token.is_cancelled() {
            let outcome = self.run_batch().await;
            let idle = matches!(outcome, Ok(Batch::Idle));
            if idle || lag_refreshed.is_none_or(|at| at.elapsed() >= LAG_REFRESH) {
                if let Ok(pending) = self.store.pending().await {
                    self.metrics.lag(pending);
                    lag_refreshed = Some(Instant::now());
                }
            }
            let wait_for_rows = match outcome {
                Ok(Batch::Done(report)) if report.failed == 0 => {
                    backoff.reset();
                    continue;
                }
                Ok(Batch::Done(_)) => None,
                Ok(Batch::Idle) => {
                    backoff.reset();
                    Some(self.config.poll_interval)
                }
                Ok(Batch::Contended) => Some(CONTENDED_PAUSE.min(self.config.poll_interval)),
                Err(error) => {
                    let error = anyhow::Error::from(error);
                    tracing::warn!(error = %format!("{error:#}"), "outbox batch failed; retrying with backoff");
                    None
                }
            };
            match wait_for_rows {
                Some(limit) => tokio::select! {
                    () = wake.notified() => {}
                    () = tokio::time::sleep(limit) => {}
                    () = token.cancelled() => {}
                },
                // A backoff is not cut short by new rows: a failing broker must not be hammered.
                None => tokio::select! {
                    () = tokio::time::sleep(backoff.next_random()) => {}
                    () = token.cancelled() => {}
                },
            }
        }
    }

    /// Claims, publishes and records one batch in one transaction.
    pub async fn run_batch(&self) -> Result<Batch, StoreError> {
        let batch = i64::from(self.config.batch_size);
        let mut tx = self.store.begin().await?;
        let window = tx.window(batch * WINDOW_BATCHES).await?;
        if window.is_empty() {
            tx.commit().await?;
            return Ok(Batch::Idle);
        }
        let aggregates = plan::aggregates_in_order(&window);
        let mut claimed: Vec<String> = Vec::new();
        let (mut claimed_rows, mut from) = (0usize, 0usize);
        let wanted = usize::try_from(batch).unwrap_or(usize::MAX);
        while from < aggregates.len() && claimed_rows < wanted {
            let end = plan::next_claim(&aggregates, from, wanted - claimed_rows);
            let names: Vec<String> = aggregates[from..end].iter().map(|(name, _)| name.clone()).collect();
            let got: HashSet<String> = tx.claim(&names).await?.into_iter().collect();
            claimed_rows +=
                aggregates[from..end].iter().filter(|(name, _)| got.contains(name)).map(|(_, n)| n).sum::<usize>();
            claimed.extend(got);
            from = end;
        }
        let rows = if claimed.is_empty() { Vec::new() } else { tx.rows(&claimed, batch).await? };
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(Batch::Contended);
        }

        let contracts = self.publisher.contracts();
        let prepared: Vec<Result<PreparedEvent, RowError>> =
            rows.iter().map(|row| row.prepare(contracts, &self.config.source)).collect();
        let valid: Vec<PreparedEvent> = prepared.iter().filter_map(|p| p.as_ref().ok().cloned()).collect();
        let started = Instant::now();
        let mut sent = self.publisher.publish_all(&valid).await.into_iter();
        let elapsed = started.elapsed();
        let outcomes: Vec<Outcome> = prepared
            .iter()
            .map(|p| match p {
                Err(invalid) => Outcome::Invalid(invalid.to_string()),
                Ok(_) => match sent.next() {
                    Some(Ok(position)) => Outcome::Published(position),
                    Some(Err(error)) => Outcome::Failed { permanent: is_permanent(&error), error: error.to_string() },
                    None => Outcome::Failed { error: "no answer from the producer".into(), permanent: false },
                },
            })
            .collect();
        let keys: Vec<(&str, i32)> = rows.iter().map(|r| (r.aggregate_id.as_str(), r.attempts)).collect();
        let marks = plan::decide(&keys, outcomes, self.config.max_attempts);
        tx.record(&rows, &marks).await?;
        tx.commit().await?;

        let mut report = BatchReport::default();
        let mut first_failure: Option<&str> = None;
        for ((row, mark), prepared) in rows.iter().zip(&marks).zip(&prepared) {
            match mark {
                Mark::Published(_) => report.published += 1,
                Mark::HeldBack => report.held_back += 1,
                Mark::Retry(error) => {
                    report.failed += 1;
                    first_failure.get_or_insert(error);
                }
                Mark::Rejected(error) => {
                    report.rejected += 1;
                    let reason = if prepared.is_err() { RejectReason::Invalid } else { RejectReason::Refused };
                    self.metrics.row_rejected(row.id, &row.event_id, reason, error);
                }
            }
        }
        if !valid.is_empty() {
            self.metrics.batch_published(report.published, report.held_back, elapsed);
        }
        if let Some(error) = first_failure {
            self.metrics.rows_not_acknowledged(report.failed, error);
        }
        Ok(Batch::Done(report))
    }
}

/// A refusal of the record itself, which retrying cannot fix (as opposed to a broker that is
/// unreachable, slow or electing a leader).
fn is_permanent(error: &ProduceError) -> bool {
    let ProduceError::NotAcknowledged(error) = error else {
        return false;
    };
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::MessageBatchTooLarge
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::InvalidTopic
        )
    )
}
