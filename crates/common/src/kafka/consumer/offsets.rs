//! Consumer offsets kept in the service's own database (the transactional offset mode): the
//! handler saves them in the transaction that applies a batch, so effects and progress commit
//! together or not at all, and the runtime seeks to them whenever it is assigned a partition.
//!
//! One row per `(group_id, topic, partition)` in `eventline_consumer_offsets`; `next_offset` is
//! the offset of the next event to handle, like a Kafka commit. Portable SQL on PostgreSQL and
//! SQLite; migrations 9000-9099 in `crates/common/migrations/`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row as _};

use super::parked::{self, ParkedId};
use crate::db::{Database, DbError, Migrations};
use crate::kafka::Position;

/// The consumer runtime's migrations (versions 9000-9099 of the shared database).
pub fn migrations() -> Migrations {
    Migrations::new(sqlx::migrate!("./migrations/postgres"), sqlx::migrate!("./migrations/sqlite"))
}

const UPSERT: &str = "INSERT INTO eventline_consumer_offsets (group_id, topic, \"partition\", next_offset) \
     VALUES ($1, $2, $3, $4) \
     ON CONFLICT (group_id, topic, \"partition\") DO UPDATE SET next_offset = excluded.next_offset";
const INSERT_IF_ABSENT: &str = "INSERT INTO eventline_consumer_offsets (group_id, topic, \"partition\", next_offset) \
     VALUES ($1, $2, $3, $4) \
     ON CONFLICT (group_id, topic, \"partition\") DO NOTHING";
const SELECT_TOPIC: &str = "SELECT \"partition\", next_offset FROM eventline_consumer_offsets \
     WHERE group_id = $1 AND topic = $2";
const SELECT_GROUPS: &str = "SELECT DISTINCT group_id FROM eventline_consumer_offsets ORDER BY group_id";
const SELECT_GROUP: &str = "SELECT topic, \"partition\", next_offset FROM eventline_consumer_offsets \
     WHERE group_id = $1 ORDER BY topic, \"partition\"";

#[derive(Debug, thiserror::Error)]
pub enum OffsetStoreError {
    #[error("cannot apply the consumer offset migrations")]
    Migrate(#[source] DbError),
    #[error("consumer offset query failed")]
    Query(#[from] sqlx::Error),
}

/// What [`OffsetStore::save`] saves: offsets (a slice, array or `Vec` of [`PartitionOffset`]),
/// or a batch's [`Positions`](super::Positions), which may also release parked events.
pub trait SavePositions: Sync {
    fn offsets(&self) -> &[PartitionOffset];

    /// Parked events to delete with the offsets.
    fn released(&self) -> &[ParkedId] {
        &[]
    }
}

impl SavePositions for [PartitionOffset] {
    fn offsets(&self) -> &[PartitionOffset] {
        self
    }
}

impl<const N: usize> SavePositions for [PartitionOffset; N] {
    fn offsets(&self) -> &[PartitionOffset] {
        self
    }
}

impl SavePositions for Vec<PartitionOffset> {
    fn offsets(&self) -> &[PartitionOffset] {
        self
    }
}

/// Where a partition continues: the offset of the next event to handle.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PartitionOffset {
    pub topic: String,
    pub partition: i32,
    pub next_offset: i64,
}

/// The offsets of consumer groups in one database.
#[derive(Debug, Clone)]
pub struct OffsetStore {
    db: Database,
}

impl OffsetStore {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Creates the table if this database does not have it yet.
    pub async fn migrate(&self) -> Result<(), OffsetStoreError> {
        self.db.migrate(&migrations()).await.map_err(OffsetStoreError::Migrate)
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Saves `positions` for `group` on `conn`: call it inside the transaction that applies the
    /// batch (`OffsetStore::save(&mut tx, batch.group(), batch.positions())`). Given a batch's
    /// [`Positions`](super::Positions), it also deletes the parked events the batch applies
    /// (`key_order = "key"`), so they leave the store with the batch's effects or not at all.
    pub async fn save<P: SavePositions + ?Sized>(
        conn: &mut AnyConnection,
        group: &str,
        positions: &P,
    ) -> Result<(), OffsetStoreError> {
        parked::delete_on(conn, group, positions.released()).await?;
        for position in positions.offsets() {
            sqlx::query(UPSERT)
                .bind(group)
                .bind(&position.topic)
                .bind(i64::from(position.partition))
                .bind(position.next_offset)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }

    /// Sets `positions` in a transaction of its own: progress past events that needed no
    /// handler call (skipped or dead-lettered), and offset resets by operators.
    pub async fn store(&self, group: &str, positions: &[PartitionOffset]) -> Result<(), OffsetStoreError> {
        let mut tx = self.db.pool().begin().await?;
        Self::save(&mut tx, group, positions).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records where a partition starts when nothing is stored for it yet; a stored offset wins.
    pub async fn store_if_absent(&self, group: &str, positions: &[PartitionOffset]) -> Result<(), OffsetStoreError> {
        let mut tx = self.db.pool().begin().await?;
        for position in positions {
            sqlx::query(INSERT_IF_ABSENT)
                .bind(group)
                .bind(&position.topic)
                .bind(i64::from(position.partition))
                .bind(position.next_offset)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The stored next offsets of `partitions` of `topic` (partitions without one are absent).
    pub async fn load(
        &self,
        group: &str,
        topic: &str,
        partitions: &[i32],
    ) -> Result<BTreeMap<i32, i64>, OffsetStoreError> {
        let rows = sqlx::query(SELECT_TOPIC).bind(group).bind(topic).fetch_all(self.db.pool()).await?;
        let mut offsets = BTreeMap::new();
        for row in rows {
            let partition: i64 = row.try_get(0)?;
            let next_offset: i64 = row.try_get(1)?;
            match i32::try_from(partition) {
                Ok(partition) if partitions.contains(&partition) => {
                    offsets.insert(partition, next_offset);
                }
                _ => {}
            }
        }
        Ok(offsets)
    }

    /// Every stored offset of `group`, by topic and partition.
    /// Every group with offsets in this store.
    pub async fn groups(&self) -> Result<Vec<String>, OffsetStoreError> {
        let rows = sqlx::query(SELECT_GROUPS).fetch_all(self.db.pool()).await?;
        let mut groups = Vec::with_capacity(rows.len());
        for row in rows {
            groups.push(row.try_get(0)?);
        }
        Ok(groups)
    }

    pub async fn list(&self, group: &str) -> Result<Vec<PartitionOffset>, OffsetStoreError> {
        let rows = sqlx::query(SELECT_GROUP).bind(group).fetch_all(self.db.pool()).await?;
        let mut offsets = Vec::with_capacity(rows.len());
        for row in rows {
            let partition: i64 = row.try_get(1)?;
            offsets.push(PartitionOffset {
                topic: row.try_get(0)?,
                partition: i32::try_from(partition).unwrap_or(i32::MAX),
                next_offset: row.try_get(2)?,
            });
        }
        Ok(offsets)
    }

    /// `true` once `group` has applied the event at `position` (read-your-writes): the stored
    /// offset is past it, and it is not parked behind a blocked key (`key_order = "key"`).
    pub async fn has_passed(&self, group: &str, position: &Position) -> Result<bool, OffsetStoreError> {
        let stored = self.load(group, &position.topic, &[position.partition]).await?;
        if stored.get(&position.partition).is_none_or(|next| *next <= position.offset) {
            return Ok(false);
        }
        Ok(!parked::is_parked(self.db.pool(), group, position).await?)
    }
}
