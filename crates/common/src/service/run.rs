//! Building a consumer service and running it: its HTTP routes and its consumer side by side
//! until the token is cancelled, either one failing stopping the other.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{ConsumerRun, ConsumerService, Platform, RunTarget, ServiceContext, ServiceSettings};
use crate::kafka::consumer::{ConsumerMetrics, ConsumerRuntime, OffsetMode, OffsetStore};

/// How often a running service is asked whether its consumer should move to another group.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// A service built, its metrics registered and its listener bound: ready to run.
pub struct Prepared<S: ConsumerService> {
    service: Arc<S>,
    ctx: ServiceContext<S::Settings>,
    consumer_metrics: ConsumerMetrics,
    listener: TcpListener,
}

/// Validates `settings`, migrates the runtime's tables (offsets, members, the effect ledger),
/// builds the service and binds its listener.
pub async fn prepare<S: ConsumerService>(platform: Platform, settings: S::Settings) -> anyhow::Result<Prepared<S>> {
    let name = S::NAME;
    S::validate(&settings).with_context(|| format!("invalid settings in [consumers.{name}]"))?;
    settings.consumer().validate().with_context(|| format!("invalid settings in [consumers.{name}.consumer]"))?;
    OffsetStore::new(platform.db.clone())
        .migrate()
        .await
        .with_context(|| format!("cannot create the consumer runtime's tables for {name}"))?;
    let consumer_metrics =
        ConsumerMetrics::registered_in(&platform.metrics).context("cannot register the consumer metrics")?;
    let ctx = ServiceContext::new(name, platform, settings);
    let service = S::build(&ctx).await.with_context(|| format!("cannot build the {name} service"))?;
    let listener = crate::http::bind(ctx.settings.listen(), name).await?;
    Ok(Prepared { service: Arc::new(service), ctx, consumer_metrics, listener })
}

impl<S: ConsumerService> Prepared<S> {
    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.listener.local_addr().context("the listener has no address")
    }

    pub fn service(&self) -> &S {
        &self.service
    }

    pub fn context(&self) -> &ServiceContext<S::Settings> {
        &self.ctx
    }

    /// The service's routes, `/health/live`, `/health/ready` and `/metrics`. Ready means the
    /// database answers and the consumer has not been waiting out a dependency's outage for
    /// longer than its `outage.ready_after`.
    pub fn router(&self) -> Router {
        let db = self.ctx.db.clone();
        let progress = self.ctx.progress.clone();
        let health = crate::http::health_router(move || {
            let db = db.clone();
            let consumer = progress.get();
            async move {
                if !db.is_ready().await {
                    return Err("the database does not answer".to_owned());
                }
                match consumer {
                    Some(consumer) if !consumer.is_ready() => {
                        let outage = consumer.outage();
                        Err(outage.map_or_else(
                            || "the consumer is waiting out an outage".to_owned(),
                            |outage| format!("{} has been unavailable for {:?}", outage.dependency, outage.paused_for),
                        ))
                    }
                    _ => Ok(()),
                }
            }
        });
        self.service.routes().merge(health).merge(crate::metrics::router(self.ctx.metrics.clone()))
    }

    /// Serves the routes and runs the consumer until `token` is cancelled, then drains both.
    pub async fn run(self, token: CancellationToken) -> anyhow::Result<()> {
        let router = self.router();
        let name = S::NAME;
        let Prepared { service, ctx, consumer_metrics, listener } = self;
        let stop_on_failure = token.clone();
        let serving = async {
            let served = crate::http::serve(listener, router, token.clone()).await;
            if served.is_err() {
                stop_on_failure.cancel();
            }
            served.with_context(|| format!("the HTTP server of {name} failed"))
        };
        let consuming = async {
            let consumed = follow(service.as_ref(), &ctx, &consumer_metrics, token.clone()).await;
            if consumed.is_err() {
                token.cancel();
            }
            consumed
        };
        let background = futures::future::join_all(service.background(token.clone()).into_iter().map(|task| {
            let token = token.clone();
            async move {
                let done = task.await;
                if done.is_err() {
                    token.cancel();
                }
                done
            }
        }));
        let (served, consumed, background) = tokio::join!(serving, consuming, background);
        background
            .into_iter()
            .try_for_each(|done| done.with_context(|| format!("a background task of {name} failed")))?;
        consumed.and(served)
    }
}

/// Runs the consumer under the service's current group, and again under another whenever the
/// service answers one, until `token` is cancelled.
async fn follow<S: ConsumerService>(
    service: &S,
    ctx: &ServiceContext<S::Settings>,
    metrics: &ConsumerMetrics,
    token: CancellationToken,
) -> anyhow::Result<()> {
    let configured = ctx.settings.consumer();
    let mut target = service.current_run(configured).await.with_context(|| format!("{}: cannot start", S::NAME))?;
    loop {
        let stopping = token.child_token();
        let running = consume(service, ctx, metrics, target.clone(), stopping.clone());
        tokio::pin!(running);
        let mut watch = tokio::time::interval(WATCH_INTERVAL);
        watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let next = loop {
            tokio::select! {
                consumed = &mut running => {
                    ctx.progress.set(None);
                    return consumed;
                }
                _ = watch.tick() => match service.current_run(configured).await {
                    Ok(next) if next != target => break next,
                    Ok(_) => {}
                    Err(error) => tracing::warn!(
                        service = S::NAME,
                        error = %format!("{error:#}"),
                        "cannot tell which group to follow; looking again"
                    ),
                },
            }
        };
        tracing::info!(
            service = S::NAME,
            from = %target.group_id,
            to = %next.group_id,
            generation = next.generation,
            "moving the consumer to another group"
        );
        stopping.cancel();
        running.await?;
        ctx.progress.set(None);
        target = next;
    }
}

/// Runs the consumer under `target` until `stopping` is cancelled.
async fn consume<S: ConsumerService>(
    service: &S,
    ctx: &ServiceContext<S::Settings>,
    metrics: &ConsumerMetrics,
    target: RunTarget,
    stopping: CancellationToken,
) -> anyhow::Result<()> {
    let run = ConsumerRun { target: target.clone(), stopping: stopping.clone() };
    let mut settings = ctx.settings.consumer().clone();
    settings.group_id = target.group_id.clone();
    let transactional = settings.offset_mode == OffsetMode::Transactional;
    let mut runtime = ConsumerRuntime::new(
        settings,
        ctx.kafka.clone(),
        ctx.registry_client.clone(),
        ctx.catalog.clone(),
        service.handler(&run),
        metrics.clone(),
    );
    if transactional {
        runtime = runtime.with_offset_store(OffsetStore::new(ctx.db.clone()));
    }
    ctx.progress.set(Some(runtime.progress()));
    tracing::info!(service = S::NAME, group = %target.group_id, generation = target.generation, "consuming");
    runtime
        .run(stopping)
        .await
        .with_context(|| format!("the consumer of {} (group {}) failed", S::NAME, target.group_id))
}
