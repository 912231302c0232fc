//! Read-your-writes: a request names the position its write landed at (`?after=` or the
//! `Eventline-Position` header, `topic:partition:offset`) and the query waits, bounded, until
//! the group of the active generation has applied it.

use std::time::Duration;

use axum::http::HeaderMap;
use eventline_common::kafka::consumer::OffsetStore;
use eventline_common::kafka::Position;
use eventline_common::service::CurrentProgress;
use tokio::time::Instant;

use super::error::ApiError;
use crate::metrics::ProjectorMetrics;

pub const POSITION_HEADER: &str = "eventline-position";
pub const AFTER_PARAMETER: &str = "after";
/// The longest pause between two looks at the offset table while waiting.
const POLL: Duration = Duration::from_millis(50);

/// `topic:partition:offset`, e.g. `orders:3:42`.
pub fn parse(text: &str) -> Option<Position> {
    let mut parts = text.rsplitn(3, ':');
    let offset = parts.next()?.parse().ok()?;
    let partition = parts.next()?.parse().ok()?;
    let topic = parts.next().filter(|t| !t.is_empty())?.to_owned();
    Some(Position { topic, partition, offset })
}

/// The position a request asks for: the `after` parameter, else the header.
pub fn requested(after: Option<&str>, headers: &HeaderMap) -> Result<Option<Position>, ApiError> {
    let (parameter, text) = match (after, headers.get(POSITION_HEADER)) {
        (Some(text), _) => (AFTER_PARAMETER, text.to_owned()),
        (None, Some(value)) => {
            ("Eventline-Position", value.to_str().map_err(|_| bad("Eventline-Position"))?.to_owned())
        }
        (None, None) => return Ok(None),
    };
    parse(&text).map(Some).ok_or_else(|| bad(parameter))
}

fn bad(parameter: &'static str) -> ApiError {
    ApiError::BadRequest { parameter, detail: "expected topic:partition:offset, e.g. orders:3:42".to_owned() }
}

/// Waits for read-your-writes.
#[derive(Debug, Clone)]
pub struct Waiter {
    pub offsets: OffsetStore,
    pub timeout: Duration,
    pub progress: CurrentProgress,
    pub metrics: ProjectorMetrics,
}

impl Waiter {
    /// Returns once `group` has applied `position` (group-wide, from the offset table), or
    /// [`ApiError::NotCaughtUp`] after the timeout. This process's consumer progress only wakes
    /// the wait early.
    pub async fn wait_for(&self, group: &str, position: &Position) -> Result<(), ApiError> {
        let started = Instant::now();
        let deadline = started + self.timeout;
        loop {
            let passed = self.offsets.has_passed(group, position).await.map_err(crate::store::StoreError::from)?;
            if passed {
                self.metrics.waited(true);
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                self.metrics.waited(false);
                return Err(ApiError::NotCaughtUp { position: position.clone(), waited: now - started });
            }
            let pause = (deadline - now).min(POLL);
            match self.progress.get() {
                Some(progress) => {
                    progress.wait_for(position, pause).await;
                }
                None => tokio::time::sleep(pause).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_parse_from_topic_partition_offset() {
        assert_eq!(parse("orders:3:42"), Some(Position { topic: "orders".into(), partition: 3, offset: 42 }));
        assert_eq!(parse("orders:3"), None);
        assert_eq!(parse(":3:4"), None);
        assert_eq!(parse("orders:x:4"), None);
    }
}
