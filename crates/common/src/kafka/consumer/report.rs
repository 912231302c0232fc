//! Every `lag_report_interval`: the lag of each owned partition (high watermark − next offset)
//! into the gauge, and, while there is work (events handled, or lag), one progress line with
//! the throughput — never a line per event.
//!
//! Watermarks are read with a client of its own: on the consumer's connection they would wait
//! behind its long-polling fetches.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use rdkafka::consumer::{BaseConsumer, Consumer};

use super::context::Shared;
use super::start::{TopicPartition, REQUEST_TIMEOUT};
use crate::kafka::KafkaSettings;

pub(crate) async fn run(shared: Arc<Shared>, kafka: KafkaSettings) {
    let client: Arc<BaseConsumer> = match kafka.client_config().create() {
        Ok(client) => Arc::new(client),
        Err(error) => {
            tracing::warn!(group = %shared.group, %error, "cannot create the lag client; lag is not reported");
            return;
        }
    };
    let mut ticks = tokio::time::interval(shared.settings.lag_report_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    let mut last = Instant::now();
    let mut last_handled = shared.progress.handled_total();
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = shared.token.cancelled() => return,
        }
        let partitions: Vec<TopicPartition> = shared.progress.assigned().into_keys().collect();
        let reader = client.clone();
        let Ok(ends) = tokio::task::spawn_blocking(move || high_watermarks(&reader, &partitions)).await else {
            return;
        };
        let mut lag_total = 0;
        for ((topic, partition), end) in &ends {
            // Read after the watermark, so a fast consumer never shows more lag than it has.
            if let Some(next) = shared.progress.next_offset(topic, *partition) {
                let lag = (end - next).max(0);
                shared.metrics.set_lag(topic, *partition, lag);
                lag_total += lag;
            }
        }
        let now = Instant::now();
        let handled = shared.progress.handled_total();
        let delta = handled.saturating_sub(last_handled);
        if delta > 0 || lag_total > 0 {
            let seconds = now.duration_since(last).as_secs_f64().max(0.001);
            tracing::info!(
                group = %shared.group,
                handled = delta,
                rate = %format!("{:.0}/s", delta as f64 / seconds),
                lag = lag_total,
                partitions = ends.len(),
                "consumer progress"
            );
        }
        last = now;
        last_handled = handled;
    }
}

fn high_watermarks(client: &BaseConsumer, partitions: &[TopicPartition]) -> BTreeMap<TopicPartition, i64> {
    let mut ends = BTreeMap::new();
    for (topic, partition) in partitions {
        match client.fetch_watermarks(topic, *partition, REQUEST_TIMEOUT) {
            Ok((_low, high)) => {
                ends.insert((topic.clone(), *partition), high);
            }
            Err(error) => tracing::debug!(%topic, partition, %error, "cannot read the high watermark"),
        }
    }
    ends
}
