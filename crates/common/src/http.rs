//! Serving an axum router until the process shuts down, and the health endpoints.

use std::net::SocketAddr;

use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const LIVE_PATH: &str = "/health/live";
pub const READY_PATH: &str = "/health/ready";

/// Binds `addr`, logging where it listens.
pub async fn bind(addr: &str, what: &str) -> anyhow::Result<TcpListener> {
    use anyhow::Context as _;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for {what}"))?;
    let local: SocketAddr = listener.local_addr().context("listener has no address")?;
    tracing::info!(%local, "{what} listening");
    Ok(listener)
}

/// Serves `router` until `token` is cancelled, then finishes in-flight requests.
pub async fn serve(listener: TcpListener, router: Router, token: CancellationToken) -> anyhow::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { token.cancelled().await })
        .await?;
    Ok(())
}

/// `GET /health/live` (always 200 while the process runs) and `GET /health/ready`
/// (200 when `ready` says so, 503 otherwise).
pub fn health_router<F, Fut>(ready: F) -> Router
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    Router::new()
        .route(LIVE_PATH, get(|| async { Json(serde_json::json!({"status": "live"})) }))
        .route(
            READY_PATH,
            get(move || {
                let ready = ready.clone();
                async move {
                    match ready().await {
                        Ok(()) => (StatusCode::OK, Json(serde_json::json!({"status": "ready"}))),
                        Err(reason) => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            Json(serde_json::json!({"status": "not ready", "reason": reason})),
                        ),
                    }
                }
            }),
        )
}
