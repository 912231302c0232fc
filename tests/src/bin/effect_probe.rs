//! `effect_probe`: a consumer service with one side effect per order, for the crash test of the
//! effect ledger (`tests/tests/effects_crash.rs`). For every `OrderPlaced` it records a webhook
//! call to `receiver` in the transaction that saves its offsets; its effect worker POSTs
//! `{"order_id": …}` there with the effect's id in `webhook-id`.

use std::time::Duration;

use eventline_common::effects::{Effect, EffectKey, EffectLedger, EffectWorker, EffectWorkerSettings, Perform, Tried};
use eventline_common::events::OrderPlaced;
use eventline_common::kafka::consumer::{Batch, ConsumerSettings, Handler, HandlerError, OffsetMode, OffsetStore};
use eventline_common::service::{self, ConsumerRun, ConsumerService, ServiceContext, ServiceEntry};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProbeSettings {
    listen: String,
    #[serde(with = "humantime_serde")]
    drain_timeout: Duration,
    consumer: ConsumerSettings,
    receiver: String,
    effects: EffectWorkerSettings,
}

eventline_common::service_settings!(ProbeSettings);

struct Probe {
    ledger: EffectLedger,
    worker: Arc<EffectWorker<Webhook>>,
    receiver: String,
}

struct Recorder {
    ledger: EffectLedger,
    receiver: String,
    wake: Arc<tokio::sync::Notify>,
}

struct Webhook {
    http: reqwest::Client,
}

impl ConsumerService for Probe {
    const NAME: &'static str = "effect_probe";
    type Settings = ProbeSettings;
    type Handler = Recorder;

    fn default_settings() -> ProbeSettings {
        let mut consumer = ConsumerSettings::new("effect-probe", ["orders"]);
        consumer.event_types = vec!["OrderPlaced".into()];
        consumer.offset_mode = OffsetMode::Transactional;
        ProbeSettings {
            listen: "127.0.0.1:0".into(),
            drain_timeout: Duration::from_secs(10),
            consumer,
            receiver: String::new(),
            effects: EffectWorkerSettings::default(),
        }
    }

    fn validate(settings: &ProbeSettings) -> anyhow::Result<()> {
        settings.effects.validate().map_err(anyhow::Error::msg)
    }

    async fn build(ctx: &ServiceContext<ProbeSettings>) -> anyhow::Result<Self> {
        let webhook = Webhook { http: reqwest::Client::new() };
        let worker =
            EffectWorker::new(ctx.effect_ledger(), ctx.name, webhook, ctx.settings.effects.clone(), &ctx.metrics)?;
        Ok(Self { ledger: ctx.effect_ledger(), worker: Arc::new(worker), receiver: ctx.settings.receiver.clone() })
    }

    fn handler(&self, _run: &ConsumerRun) -> Recorder {
        Recorder { ledger: self.ledger.clone(), receiver: self.receiver.clone(), wake: self.worker.waker() }
    }

    fn background(&self, token: CancellationToken) -> Vec<BoxFuture<'static, anyhow::Result<()>>> {
        vec![Box::pin(self.worker.clone().run(token))]
    }
}

impl Handler for Recorder {
    async fn handle(&self, batch: &Batch) -> Result<(), HandlerError> {
        let mut tx = self.ledger.database().pool().begin().await.map_err(HandlerError::retryable)?;
        for event in batch {
            let order: OrderPlaced = event.event()?;
            let key = EffectKey::new(event.envelope.id, "webhook", &self.receiver);
            let payload = serde_json::json!({"order_id": order.order_id});
            self.ledger.record(&mut tx, &key, &payload).await.map_err(HandlerError::retryable)?;
        }
        OffsetStore::save(&mut tx, batch.group(), batch.positions()).await.map_err(HandlerError::retryable)?;
        tx.commit().await.map_err(HandlerError::retryable)?;
        self.wake.notify_one();
        Ok(())
    }
}

impl Perform for Webhook {
    async fn perform(&self, effect: &Effect) -> Tried {
        let sent = self
            .http
            .post(&effect.key.recipient)
            .header("webhook-id", effect.effect_id.to_string())
            .json(&effect.payload)
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => Tried::Done,
            Ok(response) => Tried::again(format!("the receiver answered {}", response.status())),
            Err(error) => Tried::again(format!("cannot reach the receiver: {error}")),
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service::process(&ServiceEntry::of::<Probe>()).await
}
