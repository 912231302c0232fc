//! `--to-datetime`: the first event at or after a time, exactly.
//!
//! Kafka's ListOffsets by timestamp answers, per partition, the offset of the first record whose
//! timestamp is at or after the time, or none when every record is older; `none` here means the
//! log end. (Until December 2026 the answer was checked against the records, because Tansu 0.6
//! answered offset 0 instead of none; `crates/cli/tests/replay.rs` holds the exact counts.)

use std::collections::BTreeMap;

use eventline_common::kafka::consumer::TopicPartition;

use super::broker::GroupClient;
use super::error::ReplayError;

/// The first offset whose record timestamp is at or after `millis` in each partition of
/// `bounds` (partition → (log start, log end)); the log end when there is none.
pub(super) async fn first_at_or_after(
    client: &GroupClient,
    bounds: &BTreeMap<TopicPartition, (i64, i64)>,
    millis: i64,
) -> Result<BTreeMap<TopicPartition, i64>, ReplayError> {
    let found = client.offsets_at(bounds.keys().cloned().collect(), millis).await?;
    Ok(bounds
        .iter()
        .map(|(key, (start, end))| (key.clone(), found.get(key).copied().unwrap_or(*end).clamp(*start, *end)))
        .collect())
}
