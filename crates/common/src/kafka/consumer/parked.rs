//! Parked events of a consumer with `key_order = "key"`: the `eventline_parked` table (migration
//! 9004, in the offset store's database) and, per partition worker, which keys are blocked.
//!
//! A key of a partition is blocked while it has rows here. Its rows, in offset order, form a
//! queue; the first is its head, and the head's state says what the key waits for:
//! - `retry`: an event that kept failing retryably through its in-line budget; tried again from
//!   here at `next_try_at_ms` (with [`ConsumerSettings::parked_retry`] backoff), dead-lettered
//!   once those rounds are spent;
//! - `dead`: an event that was dead-lettered; it waits for a redrive of the same event id
//!   (`eventline dlq redrive`) to be handled, whose handler transaction deletes this row;
//! - `parked`: nothing any more; the head is handed to the handler now, with the `parked` rows
//!   behind it (a released batch), whose transaction deletes the rows it applied.
//!
//! Rows are written by the runtime before any offset that passes them is saved (so none is lost
//! when the process dies in between: the events are read again, find their key blocked and are
//! parked onto the same primary key), and released only once the partition's saved offset lies
//! past them (so none is applied twice: an event read again is never handled while its row
//! exists).
//!
//! [`ConsumerSettings::parked_retry`]: super::ConsumerSettings::parked_retry

use std::collections::BTreeMap;
use std::sync::Arc;

use prometheus::IntGauge;
use rdkafka::message::{Header, Headers as _, Message, OwnedHeaders, OwnedMessage, Timestamp};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row as _};

use super::dead_letter::DeadLetterReason;
use crate::db::Database;
use crate::kafka::Position;

/// A parked event: where it was read. Released batches list theirs on
/// [`Positions::released`](super::Positions::released); [`OffsetStore::save`](super::OffsetStore::save)
/// deletes them in the handler's transaction.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ParkedId {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// What a key's head waits for (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParkedState {
    Parked,
    Retry,
    Dead,
}

impl ParkedState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Parked => "parked",
            Self::Retry => "retry",
            Self::Dead => "dead",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "retry" => Self::Retry,
            "dead" => Self::Dead,
            _ => Self::Parked,
        }
    }
}

/// One row: the record as read from Kafka, and how far its own story has got.
#[derive(Debug, Clone)]
pub(crate) struct ParkedRecord {
    pub id: ParkedId,
    pub key: String,
    pub event_id: String,
    pub state: ParkedState,
    pub reason: Option<DeadLetterReason>,
    pub error: Option<String>,
    /// Handler calls that included it so far.
    pub attempts: u32,
    /// Rounds of retries from the parked store so far.
    pub rounds: u32,
    pub next_try_at_ms: i64,
    pub timestamp_ms: Option<i64>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl ParkedRecord {
    /// A row for `message`, whose key is `key` and event id `event_id`.
    pub(crate) fn of(message: &OwnedMessage, key: &str, event_id: String, state: ParkedState) -> Self {
        let headers = message
            .headers()
            .map(|headers| headers.iter().map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec))).collect())
            .unwrap_or_default();
        Self {
            id: ParkedId {
                topic: message.topic().to_owned(),
                partition: message.partition(),
                offset: message.offset(),
            },
            key: key.to_owned(),
            event_id,
            state,
            reason: None,
            error: None,
            attempts: 0,
            rounds: 0,
            next_try_at_ms: 0,
            timestamp_ms: message.timestamp().to_millis(),
            value: message.payload().map(<[u8]>::to_vec),
            headers,
        }
    }

    /// The record again, as it was read (for the decoder and the dead-letter topic).
    pub(crate) fn to_message(&self) -> OwnedMessage {
        let headers = (!self.headers.is_empty()).then(|| {
            self.headers.iter().fold(OwnedHeaders::new_with_capacity(self.headers.len()), |headers, (key, value)| {
                headers.insert(Header { key, value: value.as_deref() })
            })
        });
        let timestamp = self.timestamp_ms.map_or(Timestamp::NotAvailable, Timestamp::CreateTime);
        OwnedMessage::new(
            self.value.clone(),
            Some(self.key.as_bytes().to_vec()),
            self.id.topic.clone(),
            timestamp,
            self.id.partition,
            self.id.offset,
            headers,
        )
    }

    pub(crate) fn head(&self) -> Head {
        Head {
            offset: self.id.offset,
            state: self.state,
            next_try_at_ms: self.next_try_at_ms,
            event_id: self.event_id.clone(),
        }
    }
}

/// Headers as JSON text: `[[name, hex value or null], …]`.
fn headers_to_text(headers: &[(String, Option<Vec<u8>>)]) -> String {
    let pairs: Vec<(&str, Option<String>)> =
        headers.iter().map(|(key, value)| (key.as_str(), value.as_deref().map(hex))).collect();
    serde_json::to_string(&pairs).unwrap_or_else(|_| "[]".to_owned())
}

fn headers_from_text(text: &str) -> Vec<(String, Option<Vec<u8>>)> {
    let pairs: Vec<(String, Option<String>)> = serde_json::from_str(text).unwrap_or_default();
    pairs.into_iter().map(|(key, value)| (key, value.and_then(|v| unhex(&v)))).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The head of a blocked key: its first row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    pub offset: i64,
    pub state: ParkedState,
    pub next_try_at_ms: i64,
    pub event_id: String,
}

impl Head {
    /// Whether the head can be handed to the handler now: it is no longer waiting, or its retry
    /// is due, and the partition's saved offset (`saved`) is past it.
    pub(crate) fn is_due(&self, now_ms: i64, saved: i64) -> bool {
        let ready = match self.state {
            ParkedState::Parked => true,
            ParkedState::Retry => self.next_try_at_ms <= now_ms,
            ParkedState::Dead => false,
        };
        ready && self.offset < saved
    }
}

const COLUMNS: &str = "topic, \"partition\", record_offset, record_key, event_id, state, reason, error, attempts, \
     rounds, next_try_at_ms, record_timestamp_ms, record_value, record_headers";
const INSERT: &str =
    "INSERT INTO eventline_parked (group_id, topic, \"partition\", record_offset, record_key, event_id, \
     state, reason, error, attempts, rounds, next_try_at_ms, parked_at_ms, record_timestamp_ms, record_value, \
     record_headers) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
     ON CONFLICT (group_id, topic, \"partition\", record_offset) DO NOTHING";
const DELETE: &str =
    "DELETE FROM eventline_parked WHERE group_id = $1 AND topic = $2 AND \"partition\" = $3 AND record_offset = $4";
const HEADS: &str = "SELECT p.record_key, p.record_offset, p.state, p.next_try_at_ms, p.event_id \
     FROM eventline_parked p WHERE p.group_id = $1 AND p.topic = $2 AND p.\"partition\" = $3 \
     AND p.record_offset = (SELECT MIN(q.record_offset) FROM eventline_parked q WHERE q.group_id = p.group_id \
     AND q.topic = p.topic AND q.\"partition\" = p.\"partition\" AND q.record_key = p.record_key)";
const COUNT: &str = "SELECT COUNT(*) FROM eventline_parked WHERE group_id = $1 AND topic = $2 AND \"partition\" = $3";
const UPDATE: &str = "UPDATE eventline_parked SET state = $5, reason = $6, error = $7, attempts = $8, rounds = $9, \
     next_try_at_ms = $10 WHERE group_id = $1 AND topic = $2 AND \"partition\" = $3 AND record_offset = $4";
const IS_PARKED: &str = "SELECT 1 FROM eventline_parked \
     WHERE group_id = $1 AND topic = $2 AND \"partition\" = $3 AND record_offset = $4";
const DEAD_OF_EVENT: &str = "SELECT topic, \"partition\", record_offset FROM eventline_parked \
     WHERE group_id = $1 AND record_key = $2 AND event_id = $3 AND state = 'dead'";

/// The parked events of one group.
#[derive(Clone)]
pub(crate) struct ParkedStore {
    db: Database,
    group: Arc<str>,
}

impl ParkedStore {
    pub(crate) fn new(db: Database, group: Arc<str>) -> Self {
        Self { db, group }
    }

    /// Writes `rows` in one transaction; rows already there stay as they are.
    pub(crate) async fn insert(&self, rows: &[ParkedRecord]) -> Result<(), sqlx::Error> {
        let mut tx = self.db.pool().begin().await?;
        let parked_at = now_ms();
        for row in rows {
            sqlx::query(INSERT)
                .bind(&*self.group)
                .bind(&row.id.topic)
                .bind(i64::from(row.id.partition))
                .bind(row.id.offset)
                .bind(&row.key)
                .bind(&row.event_id)
                .bind(row.state.as_str())
                .bind(row.reason.map(|r| r.as_str().to_owned()))
                .bind(row.error.clone())
                .bind(i64::from(row.attempts))
                .bind(i64::from(row.rounds))
                .bind(row.next_try_at_ms)
                .bind(parked_at)
                .bind(row.timestamp_ms)
                .bind(row.value.clone())
                .bind(headers_to_text(&row.headers))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await
    }

    /// Sets the state of the row `row.id` (after a failed try of a head).
    pub(crate) async fn update(&self, row: &ParkedRecord) -> Result<(), sqlx::Error> {
        sqlx::query(UPDATE)
            .bind(&*self.group)
            .bind(&row.id.topic)
            .bind(i64::from(row.id.partition))
            .bind(row.id.offset)
            .bind(row.state.as_str())
            .bind(row.reason.map(|r| r.as_str().to_owned()))
            .bind(row.error.clone())
            .bind(i64::from(row.attempts))
            .bind(i64::from(row.rounds))
            .bind(row.next_try_at_ms)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// Deletes `ids` in a transaction of its own; returns how many were still there.
    pub(crate) async fn delete(&self, ids: &[ParkedId]) -> Result<u64, sqlx::Error> {
        let mut tx = self.db.pool().begin().await?;
        let deleted = delete_on(&mut tx, &self.group, ids).await?;
        tx.commit().await?;
        Ok(deleted)
    }

    /// The head of every blocked key of a partition, and how many rows it has in all.
    pub(crate) async fn heads(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<(BTreeMap<String, Head>, i64), sqlx::Error> {
        let rows = sqlx::query(HEADS)
            .bind(&*self.group)
            .bind(topic)
            .bind(i64::from(partition))
            .fetch_all(self.db.pool())
            .await?;
        let mut heads = BTreeMap::new();
        for row in rows {
            let state: String = row.try_get(2)?;
            heads.insert(
                row.try_get(0)?,
                Head {
                    offset: row.try_get(1)?,
                    state: ParkedState::parse(&state),
                    next_try_at_ms: row.try_get(3)?,
                    event_id: row.try_get(4)?,
                },
            );
        }
        let count: i64 = sqlx::query(COUNT)
            .bind(&*self.group)
            .bind(topic)
            .bind(i64::from(partition))
            .fetch_one(self.db.pool())
            .await?
            .try_get(0)?;
        Ok((heads, count))
    }

    /// The head of `key` and the `parked` rows right behind it, at most `limit`, in order.
    pub(crate) async fn run_of(
        &self,
        topic: &str,
        partition: i32,
        key: &str,
        limit: usize,
    ) -> Result<Vec<ParkedRecord>, sqlx::Error> {
        let sql = format!(
            "SELECT {COLUMNS} FROM eventline_parked WHERE group_id = $1 AND topic = $2 AND \"partition\" = $3 \
             AND record_key = $4 ORDER BY record_offset LIMIT {}",
            limit.max(1)
        );
        let rows = sqlx::query(&sql)
            .bind(&*self.group)
            .bind(topic)
            .bind(i64::from(partition))
            .bind(key)
            .fetch_all(self.db.pool())
            .await?;
        let mut run = Vec::with_capacity(rows.len());
        for row in rows {
            let record = record_of(&row)?;
            if !run.is_empty() && record.state != ParkedState::Parked {
                break;
            }
            run.push(record);
        }
        Ok(run)
    }

    /// The dead heads (or dead rows) a redrive of event `event_id` of `key` resolves.
    pub(crate) async fn dead_of_event(&self, key: &str, event_id: &str) -> Result<Vec<ParkedId>, sqlx::Error> {
        let rows =
            sqlx::query(DEAD_OF_EVENT).bind(&*self.group).bind(key).bind(event_id).fetch_all(self.db.pool()).await?;
        let mut ids = Vec::with_capacity(rows.len());
        for row in rows {
            let partition: i64 = row.try_get(1)?;
            ids.push(ParkedId {
                topic: row.try_get(0)?,
                partition: i32::try_from(partition).unwrap_or(i32::MAX),
                offset: row.try_get(2)?,
            });
        }
        Ok(ids)
    }
}

fn record_of(row: &sqlx::any::AnyRow) -> Result<ParkedRecord, sqlx::Error> {
    let partition: i64 = row.try_get(1)?;
    let state: String = row.try_get(5)?;
    let reason: Option<String> = row.try_get(6)?;
    let attempts: i64 = row.try_get(8)?;
    let rounds: i64 = row.try_get(9)?;
    let headers: String = row.try_get(13)?;
    Ok(ParkedRecord {
        id: ParkedId {
            topic: row.try_get(0)?,
            partition: i32::try_from(partition).unwrap_or(i32::MAX),
            offset: row.try_get(2)?,
        },
        key: row.try_get(3)?,
        event_id: row.try_get(4)?,
        state: ParkedState::parse(&state),
        reason: reason.and_then(|r| r.parse().ok()),
        error: row.try_get(7)?,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        rounds: u32::try_from(rounds).unwrap_or(u32::MAX),
        next_try_at_ms: row.try_get(10)?,
        timestamp_ms: row.try_get(11)?,
        value: row.try_get(12)?,
        headers: headers_from_text(&headers),
    })
}

/// Whether the event at `position` is parked for `group`.
pub(crate) async fn is_parked(pool: &sqlx::AnyPool, group: &str, position: &Position) -> Result<bool, sqlx::Error> {
    let row = sqlx::query(IS_PARKED)
        .bind(group)
        .bind(&position.topic)
        .bind(i64::from(position.partition))
        .bind(position.offset)
        .fetch_optional(pool)
        .await?;
    Ok(row.is_some())
}

/// Deletes the parked rows `ids` of `group` on `conn` (inside the caller's transaction).
pub(crate) async fn delete_on(conn: &mut AnyConnection, group: &str, ids: &[ParkedId]) -> Result<u64, sqlx::Error> {
    let mut deleted = 0;
    for id in ids {
        deleted += sqlx::query(DELETE)
            .bind(group)
            .bind(&id.topic)
            .bind(i64::from(id.partition))
            .bind(id.offset)
            .execute(&mut *conn)
            .await?
            .rows_affected();
    }
    Ok(deleted)
}

/// The blocked keys of one partition, as its worker knows them, with the parked-events gauge.
/// Blocking and unblocking are logged here, once each (the worker's span names the group, topic
/// and partition).
pub(crate) struct KeyBlocks {
    heads: BTreeMap<String, Head>,
    /// Rows of this partition in the table.
    parked: i64,
    gauge: IntGauge,
}

impl KeyBlocks {
    pub(crate) fn new(gauge: IntGauge) -> Self {
        Self { heads: BTreeMap::new(), parked: 0, gauge }
    }

    pub(crate) fn is_blocked(&self, key: &str) -> bool {
        self.heads.contains_key(key)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.heads.is_empty()
    }

    /// Whether `key` is blocked by a dead-lettered head (which only a redrive resolves).
    pub(crate) fn waits_for_redrive(&self, key: &str) -> bool {
        self.heads.get(key).is_some_and(|head| head.state == ParkedState::Dead)
    }

    fn set_parked(&mut self, parked: i64) {
        self.gauge.add(parked - self.parked);
        self.parked = parked;
    }

    /// `rows` were written behind blocked keys (or as new heads, see [`block`](Self::block)).
    pub(crate) fn add_parked(&mut self, rows: usize) {
        self.set_parked(self.parked + i64::try_from(rows).unwrap_or(i64::MAX));
    }

    /// An event of `key` failed for good in-line and was written as a row in `head` state.
    pub(crate) fn block(&mut self, key: &str, head: Head, reason: DeadLetterReason, error: &str) {
        self.add_parked(1);
        let offset = head.offset;
        let state = head.state;
        let first = match self.heads.get_mut(key) {
            Some(current) => {
                if offset < current.offset {
                    *current = head;
                }
                false
            }
            None => {
                self.heads.insert(key.to_owned(), head);
                true
            }
        };
        if first {
            tracing::warn!(
                key,
                offset,
                state = state.as_str(),
                reason = reason.as_str(),
                error,
                "key blocked: its later events on this partition are parked until this one succeeds"
            );
        }
    }

    /// The table's view after the worker read it (on assignment, after releases, and every
    /// poll): logs the keys that unblocked, and those that blocked elsewhere (`loaded`: the first
    /// read, logged as one line).
    pub(crate) fn replace(&mut self, heads: BTreeMap<String, Head>, parked: i64, loaded: bool) {
        if loaded {
            if !heads.is_empty() {
                tracing::info!(
                    keys = heads.len(),
                    parked,
                    "blocked keys loaded: their parked events wait in the store"
                );
            }
        } else {
            for key in self.heads.keys().filter(|key| !heads.contains_key(*key)) {
                tracing::info!(key, "key unblocked: its parked events were released");
            }
            for (key, head) in heads.iter().filter(|(key, _)| !self.heads.contains_key(*key)) {
                tracing::warn!(key, offset = head.offset, state = head.state.as_str(), "key blocked");
            }
        }
        self.heads = heads;
        self.set_parked(parked);
    }

    /// The keys whose head can be handed to the handler now, in key order.
    pub(crate) fn due(&self, now_ms: i64, saved: i64) -> Vec<String> {
        self.heads.iter().filter(|(_, head)| head.is_due(now_ms, saved)).map(|(key, _)| key.clone()).collect()
    }

    /// The earliest retry of a head, as Unix milliseconds.
    pub(crate) fn next_retry_ms(&self) -> Option<i64> {
        self.heads.values().filter(|h| h.state == ParkedState::Retry).map(|h| h.next_try_at_ms).min()
    }
}

impl Drop for KeyBlocks {
    fn drop(&mut self) {
        self.gauge.sub(self.parked);
    }
}

#[cfg(test)]
#[path = "parked_tests.rs"]
mod tests;
