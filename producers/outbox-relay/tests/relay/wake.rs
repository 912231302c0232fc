//! New rows are published promptly through LISTEN/NOTIFY, not by polling, also after the
//! listening connection was lost.

use std::time::{Duration, Instant};

use eventline_outbox_relay::store::APPLICATION_NAME;
use eventline_outbox_relay::OutboxRelaySettings;
use eventline_testkit::eventually;

use crate::support::Harness;

/// Far longer than any deadline below: a row published in time was not found by polling.
const SLOW_POLL: Duration = Duration::from_secs(30);
/// "Promptly": a notification takes milliseconds; this leaves room for a loaded 2-core machine
/// (tests, brokers and builds at once) while staying a sixth of the polling interval.
const PROMPTLY: Duration = Duration::from_secs(5);

async fn insert_one(harness: &Harness) {
    harness.insert_shipments("eventline_outbox", 1, 1).await;
}

async fn published_promptly(harness: &Harness, expected: i64) -> Duration {
    let started = Instant::now();
    eventually(&format!("row {expected} published within {PROMPTLY:?}"), PROMPTLY, || async {
        (harness.counts("eventline_outbox").await.0 >= expected).then_some(())
    })
    .await;
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_row_is_published_within_moments_although_polling_is_slow() {
    let harness = Harness::with_outbox().await;
    let relay = harness.start_relay(OutboxRelaySettings { poll_interval: SLOW_POLL, ..harness.settings() }).await;
    insert_one(&harness).await;
    eventually("the first row published", Duration::from_secs(20), || async {
        (harness.counts("eventline_outbox").await.0 == 1).then_some(())
    })
    .await;
    // Each insert lands while the relay waits, so only the notification can wake it in time.
    for n in 2..=4 {
        insert_one(&harness).await;
        let took = published_promptly(&harness, n).await;
        eprintln!("row {n} published {took:?} after its insert");
    }
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_listens_again_after_its_connection_is_killed() {
    let harness = Harness::with_outbox().await;
    let relay = harness.start_relay(OutboxRelaySettings { poll_interval: SLOW_POLL, ..harness.settings() }).await;
    let first = listener_pid(&harness, None).await;
    let terminated: bool =
        sqlx::query_scalar("SELECT pg_terminate_backend($1)").bind(first).fetch_one(&harness.pool).await.unwrap();
    assert!(terminated);
    let second = listener_pid(&harness, Some(first)).await;
    assert_ne!(first, second);
    insert_one(&harness).await;
    published_promptly(&harness, 1).await;
    relay.stop().await;
}

/// The backend pid of the relay's LISTEN connection (other than `not`), once there is one.
async fn listener_pid(harness: &Harness, not: Option<i32>) -> i32 {
    eventually("the relay to LISTEN", Duration::from_secs(20), || async {
        sqlx::query_scalar::<_, i32>(
            "SELECT pid FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = $1 AND query LIKE 'LISTEN%' AND pid <> $2",
        )
        .bind(APPLICATION_NAME)
        .bind(not.unwrap_or(0))
        .fetch_optional(&harness.pool)
        .await
        .unwrap()
    })
    .await
}
