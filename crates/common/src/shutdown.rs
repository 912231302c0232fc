//! Graceful shutdown: one cancellation token per process, named tasks, a drain deadline.
//!
//! SIGINT/SIGTERM, or any task ending with an error, cancels the token; every task is expected
//! to stop accepting work, finish what is in flight and return. Tasks still running at the
//! deadline are aborted. The result names the first task that failed, so the exit code says so.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub struct Supervisor {
    token: CancellationToken,
    tasks: JoinSet<(String, anyhow::Result<()>)>,
    drain_deadline: Duration,
}

impl Supervisor {
    pub fn new(drain_deadline: Duration) -> Self {
        Self { token: CancellationToken::new(), tasks: JoinSet::new(), drain_deadline }
    }

    /// The token every task watches; cancelled when shutdown starts.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Runs `task` under `name`. A task that returns early with `Ok` while the process is not
    /// shutting down is fine (a one-shot job); one that returns `Err` stops the whole process.
    pub fn spawn<F>(&mut self, name: impl Into<String>, task: F)
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let name = name.into();
        tracing::debug!(task = %name, "task started");
        self.tasks.spawn(async move { (name, task.await) });
    }

    /// Waits for a signal, a failed task, or all tasks finishing; then drains.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(async {
            wait_for_signal().await;
            tracing::info!("shutdown signal received, draining");
        })
        .await
    }

    /// Like [`run_until_stopped`](Self::run_until_stopped) with a custom trigger (tests).
    pub async fn run_until<S: Future<Output = ()>>(mut self, stop: S) -> anyhow::Result<()> {
        let mut first_error: Option<anyhow::Error> = None;
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop, if !self.token.is_cancelled() => {
                    self.token.cancel();
                }
                () = self.token.cancelled(), if !self.token.is_cancelled() => {}
                joined = self.tasks.join_next() => match joined {
                    None => break,
                    Some(joined) => {
                        if let Some(error) = task_error(joined) {
                            if first_error.is_none() {
                                tracing::error!(error = %format!("{error:#}"), "task failed, stopping");
                                first_error = Some(error);
                            }
                            self.token.cancel();
                        }
                    }
                }
            }
            if self.token.is_cancelled() {
                break;
            }
        }
        let drained = tokio::time::timeout(self.drain_deadline, async {
            while let Some(joined) = self.tasks.join_next().await {
                if let Some(error) = task_error(joined) {
                    tracing::error!(error = %format!("{error:#}"), "task failed while draining");
                    first_error.get_or_insert(error);
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                deadline = ?self.drain_deadline,
                remaining = self.tasks.len(),
                "drain deadline passed, aborting remaining tasks"
            );
            self.tasks.abort_all();
            first_error
                .get_or_insert_with(|| anyhow::anyhow!("shutdown did not finish within {:?}", self.drain_deadline));
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

fn task_error(joined: Result<(String, anyhow::Result<()>), tokio::task::JoinError>) -> Option<anyhow::Error> {
    match joined {
        Ok((_, Ok(()))) => None,
        Ok((name, Err(error))) => Some(error.context(format!("task `{name}` failed"))),
        Err(join_error) => Some(anyhow::anyhow!("a task panicked or was aborted: {join_error}")),
    }
}

/// SIGINT and SIGTERM listeners installed at once, so a signal during start-up (while a
/// service connects or migrates) stops it cleanly instead of killing it.
pub struct Signals {
    #[cfg(unix)]
    listeners: Vec<tokio::signal::unix::Signal>,
}

impl Signals {
    pub fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let listeners = [SignalKind::interrupt(), SignalKind::terminate()]
                .into_iter()
                .filter_map(|kind| signal(kind).ok())
                .collect();
            Self { listeners }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// Resolves once SIGINT or SIGTERM arrived (since [`install`](Self::install)).
    pub async fn received(&mut self) {
        #[cfg(unix)]
        {
            if self.listeners.is_empty() {
                return wait_for_signal().await;
            }
            let waits = self.listeners.iter_mut().map(|listener| Box::pin(listener.recv()));
            futures::future::select_all(waits).await;
        }
        #[cfg(not(unix))]
        wait_for_signal().await
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stop_drains_tasks_that_watch_the_token() {
        let mut sup = Supervisor::new(Duration::from_secs(5));
        let token = sup.token();
        let (tx, rx) = tokio::sync::oneshot::channel();
        sup.spawn("worker", async move {
            token.cancelled().await;
            tx.send(()).ok();
            Ok(())
        });
        sup.run_until(async {}).await.unwrap();
        rx.await.unwrap();
    }

    #[tokio::test]
    async fn a_failing_task_stops_the_rest_and_is_named() {
        let mut sup = Supervisor::new(Duration::from_secs(5));
        let token = sup.token();
        sup.spawn("steady", async move {
            token.cancelled().await;
            Ok(())
        });
        sup.spawn("broken", async { anyhow::bail!("boom") });
        let err = sup.run_until(std::future::pending()).await.unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("broken") && text.contains("boom"), "{text}");
    }

    #[tokio::test]
    async fn tasks_past_the_deadline_are_aborted_with_an_error() {
        let mut sup = Supervisor::new(Duration::from_millis(50));
        sup.spawn("stuck", async {
            std::future::pending::<()>().await;
            Ok(())
        });
        let err = sup.run_until(async {}).await.unwrap_err();
        assert!(format!("{err:#}").contains("did not finish"));
    }
}
