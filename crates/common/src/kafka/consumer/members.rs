//! Who is consuming right now, for groups whose offsets live in the database (the transactional
//! offset mode): each running consumer keeps a heartbeat row in `eventline_consumer_members`.
//!
//! Offset resets (`eventline replay`) must not run under a live consumer: it would overwrite the
//! reset with its next batch. The broker knows a group's members too, but the database is where
//! these groups' offsets are, its answer does not depend on reaching the broker, and a heartbeat
//! row names the process (host and pid). So the runtime registers a member when it starts, refreshes its heartbeat every
//! [`HEARTBEAT_INTERVAL`] on a task of its own, and deletes the row on a clean shutdown. A member
//! whose heartbeat is older than [`MEMBER_TTL`] counts as dead, so a killed process ages out.
//! Heartbeat failures are logged and never stop the consumer.
//!
//! The table comes with the offset store's migrations ([`OffsetStore::migrate`](super::OffsetStore::migrate)).

use std::time::Duration;

use chrono::Utc;
use serde::{Deserialize, Serialize};
use sqlx::Row as _;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::offsets::OffsetStore;
use crate::db::Database;
use crate::telemetry::error_chain;

/// How often a running member refreshes its heartbeat.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(3);
/// A member whose last heartbeat is older than this is dead (several missed heartbeats).
pub const MEMBER_TTL: Duration = Duration::from_secs(15);

const UPSERT: &str = "INSERT INTO eventline_consumer_members \
     (group_id, member_id, host, pid, started_at_ms, heartbeat_at_ms) VALUES ($1, $2, $3, $4, $5, $6) \
     ON CONFLICT (group_id, member_id) DO UPDATE SET host = excluded.host, pid = excluded.pid, \
     started_at_ms = excluded.started_at_ms, heartbeat_at_ms = excluded.heartbeat_at_ms";
const HEARTBEAT: &str =
    "UPDATE eventline_consumer_members SET heartbeat_at_ms = $3 WHERE group_id = $1 AND member_id = $2";
const DELETE: &str = "DELETE FROM eventline_consumer_members WHERE group_id = $1 AND member_id = $2";
const SELECT_GROUP: &str = "SELECT group_id, member_id, host, pid, started_at_ms, heartbeat_at_ms \
     FROM eventline_consumer_members WHERE group_id = $1 ORDER BY member_id";

#[derive(Debug, thiserror::Error)]
pub enum MemberRegistryError {
    #[error("consumer member query failed")]
    Query(#[from] sqlx::Error),
}

/// One running consumer of a group, as its heartbeat row says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub group_id: String,
    /// Unique per process run (a UUID).
    pub member_id: String,
    pub host: String,
    pub pid: i64,
    /// Unix milliseconds.
    pub started_at_ms: i64,
    /// Unix milliseconds of the last heartbeat.
    pub heartbeat_at_ms: i64,
}

impl Member {
    /// A new member of `group` for this process, its heartbeat at `now_ms`.
    pub fn of_this_process(group: &str, now_ms: i64) -> Self {
        Self {
            group_id: group.to_owned(),
            member_id: uuid::Uuid::new_v4().to_string(),
            host: host_name(),
            pid: i64::from(std::process::id()),
            started_at_ms: now_ms,
            heartbeat_at_ms: now_ms,
        }
    }

    /// `true` while the last heartbeat is at most `ttl` old at `now_ms`. A heartbeat ahead of
    /// `now_ms` (another host's clock runs ahead) counts as fresh.
    pub fn is_live(&self, now_ms: i64, ttl: Duration) -> bool {
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        now_ms.saturating_sub(self.heartbeat_at_ms) <= ttl_ms
    }
}

/// The current time in Unix milliseconds (what heartbeats record).
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// This machine's name for member rows (`/proc/sys/kernel/hostname`, `$HOSTNAME`, else `unknown`).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The heartbeat rows of one database.
#[derive(Debug, Clone)]
pub struct MemberRegistry {
    db: Database,
}

impl MemberRegistry {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Adds (or replaces) `member`'s row.
    pub async fn register(&self, member: &Member) -> Result<(), MemberRegistryError> {
        sqlx::query(UPSERT)
            .bind(&member.group_id)
            .bind(&member.member_id)
            .bind(&member.host)
            .bind(member.pid)
            .bind(member.started_at_ms)
            .bind(member.heartbeat_at_ms)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// Records a heartbeat at `now_ms`; `false` when the row is gone (someone deleted it).
    pub async fn heartbeat(&self, group: &str, member_id: &str, now_ms: i64) -> Result<bool, MemberRegistryError> {
        let done = sqlx::query(HEARTBEAT).bind(group).bind(member_id).bind(now_ms).execute(self.db.pool()).await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn deregister(&self, group: &str, member_id: &str) -> Result<(), MemberRegistryError> {
        sqlx::query(DELETE).bind(group).bind(member_id).execute(self.db.pool()).await?;
        Ok(())
    }

    /// Every row of `group`, live or not.
    pub async fn all(&self, group: &str) -> Result<Vec<Member>, MemberRegistryError> {
        let rows = sqlx::query(SELECT_GROUP).bind(group).fetch_all(self.db.pool()).await?;
        let mut members = Vec::with_capacity(rows.len());
        for row in rows {
            members.push(Member {
                group_id: row.try_get(0)?,
                member_id: row.try_get(1)?,
                host: row.try_get(2)?,
                pid: row.try_get(3)?,
                started_at_ms: row.try_get(4)?,
                heartbeat_at_ms: row.try_get(5)?,
            });
        }
        Ok(members)
    }

    /// The members of `group` whose heartbeat is at most `ttl` old at `now_ms`.
    pub async fn live(&self, group: &str, now_ms: i64, ttl: Duration) -> Result<Vec<Member>, MemberRegistryError> {
        Ok(live_members(self.all(group).await?, now_ms, ttl))
    }
}

/// The members of `members` that are live at `now_ms`.
pub fn live_members(members: Vec<Member>, now_ms: i64, ttl: Duration) -> Vec<Member> {
    members.into_iter().filter(|m| m.is_live(now_ms, ttl)).collect()
}

/// A running consumer's membership: registered when it starts, a heartbeat task, and the row
/// deleted by [`leave`](Self::leave). Dropped without `leave` (a drain deadline), the heartbeat
/// stops and the row ages out.
pub(crate) struct Membership {
    registry: MemberRegistry,
    member: Member,
    stop: CancellationToken,
    heartbeats: JoinHandle<()>,
}

impl Membership {
    /// Registers this process in `store`'s database as a member of `group` (`None` without a
    /// store: Kafka-mode groups have their offsets, and their members, in the broker).
    pub(crate) async fn join(store: Option<&OffsetStore>, group: &str) -> Option<Self> {
        let registry = MemberRegistry::new(store?.database().clone());
        let member = Member::of_this_process(group, now_ms());
        let registered = registry.register(&member).await;
        if let Err(error) = &registered {
            tracing::warn!(%group, error = %error_chain(error), "cannot register this consumer as a live member; offset resets cannot see it");
        }
        let stop = CancellationToken::new();
        let heartbeats = tokio::spawn(beat(registry.clone(), member.clone(), stop.clone(), registered.is_err()));
        Some(Self { registry, member, stop, heartbeats })
    }

    /// Stops the heartbeats and deletes the row (after the last heartbeat, so none revives it).
    pub(crate) async fn leave(mut self) {
        self.stop.cancel();
        let _ended = (&mut self.heartbeats).await;
        let group = &self.member.group_id;
        if let Err(error) = self.registry.deregister(group, &self.member.member_id).await {
            tracing::warn!(%group, error = %error_chain(&error), "cannot deregister this consumer; its row ages out");
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.heartbeats.abort();
    }
}

/// Refreshes `member`'s heartbeat until `stop`; `failing` when registering already failed.
async fn beat(registry: MemberRegistry, member: Member, stop: CancellationToken, mut failing: bool) {
    let mut ticks = tokio::time::interval(HEARTBEAT_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    let group = &member.group_id;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = stop.cancelled() => return,
        }
        let now = now_ms();
        let outcome = match registry.heartbeat(group, &member.member_id, now).await {
            Ok(true) => Ok(()),
            Ok(false) => registry.register(&Member { heartbeat_at_ms: now, ..member.clone() }).await,
            Err(error) => Err(error),
        };
        // One warning when heartbeats start failing and one line when they recover, not one
        // every few seconds.
        match outcome {
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(%group, error = %error_chain(&error), "consumer heartbeats fail; retrying every {HEARTBEAT_INTERVAL:?} (offset resets cannot see this member meanwhile)");
            }
            Err(error) => tracing::debug!(%group, error = %error_chain(&error), "consumer heartbeat failed again"),
            Ok(()) if failing => {
                failing = false;
                tracing::info!(%group, "consumer heartbeats work again");
            }
            Ok(()) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, heartbeat_at_ms: i64) -> Member {
        Member {
            group_id: "g".into(),
            member_id: id.into(),
            host: "h".into(),
            pid: 1,
            started_at_ms: 0,
            heartbeat_at_ms,
        }
    }

    #[test]
    fn a_member_is_live_until_its_heartbeat_is_older_than_the_ttl() {
        let ttl = Duration::from_secs(15);
        let m = member("a", 100_000);
        assert!(m.is_live(100_000, ttl));
        assert!(m.is_live(115_000, ttl), "exactly the TTL old is still live");
        assert!(!m.is_live(115_001, ttl), "older than the TTL is dead");
        assert!(m.is_live(90_000, ttl), "a heartbeat from a clock ahead of ours counts as fresh");
        assert!(!m.is_live(i64::MAX, ttl), "no overflow");
        assert!(member("b", i64::MIN).is_live(i64::MIN, Duration::MAX), "no overflow");
    }

    #[test]
    fn live_members_drops_the_dead_ones_only() {
        let members = vec![member("fresh", 50_000), member("stale", 10_000), member("edge", 35_000)];
        let live = live_members(members, 50_000, Duration::from_secs(15));
        let ids: Vec<&str> = live.iter().map(|m| m.member_id.as_str()).collect();
        assert_eq!(ids, ["fresh", "edge"]);
    }

    #[test]
    fn a_new_member_has_a_unique_id_and_this_process_id() {
        let a = Member::of_this_process("g", 7);
        let b = Member::of_this_process("g", 7);
        assert_ne!(a.member_id, b.member_id);
        assert_eq!(a.pid, i64::from(std::process::id()));
        assert_eq!((a.started_at_ms, a.heartbeat_at_ms), (7, 7));
        assert!(!a.host.is_empty());
    }

    #[test]
    fn the_ttl_spans_several_heartbeats() {
        assert!(MEMBER_TTL >= HEARTBEAT_INTERVAL * 3, "one slow heartbeat must not make a member look dead");
    }
}
