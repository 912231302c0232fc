//! Waking the relay as soon as rows arrive: `LISTEN` on the channel the table's insert trigger
//! notifies, on a connection of its own.
//!
//! Notifications are a hint, never the record: the relay always reads the table, and polls every
//! `poll_interval` anyway. A lost connection is re-established (with backoff while the database is
//! away), and every (re)connect wakes the relay once, since rows may have arrived while nobody
//! was listening.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::domain::{Backoff, ChannelName};

const RECONNECT_INITIAL: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(10);

/// Listens on `channel` until `token` is cancelled, calling `wake.notify_one()` for every
/// notification and every (re)connect.
pub async fn listen(pool: PgPool, channel: ChannelName, wake: Arc<Notify>, token: CancellationToken) {
    let mut backoff = Backoff::new(RECONNECT_INITIAL, RECONNECT_MAX);
    while !token.is_cancelled() {
        let mut listener = match subscribe(&pool, &channel).await {
            Ok(listener) => {
                tracing::debug!(channel = %channel, "listening for new outbox rows");
                backoff.reset();
                wake.notify_one();
                listener
            }
            Err(error) => {
                let pause = backoff.next_random();
                tracing::warn!(channel = %channel, %error, ?pause, "cannot LISTEN for new outbox rows; polling meanwhile");
                tokio::select! {
                    () = token.cancelled() => return,
                    () = tokio::time::sleep(pause) => continue,
                }
            }
        };
        loop {
            tokio::select! {
                () = token.cancelled() => return,
                received = listener.try_recv() => match received {
                    Ok(Some(_notification)) => wake.notify_one(),
                    Ok(None) => {
                        tracing::info!(channel = %channel, "the LISTEN connection was lost and is back");
                        wake.notify_one();
                    }
                    Err(error) => {
                        tracing::warn!(channel = %channel, %error, "the LISTEN connection failed; reconnecting");
                        break;
                    }
                }
            }
        }
        drop(listener);
        tokio::select! {
            () = token.cancelled() => return,
            () = tokio::time::sleep(backoff.next_random()) => {}
        }
    }
}

async fn subscribe(pool: &PgPool, channel: &ChannelName) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(channel.as_str()).await?;
    Ok(listener)
}
