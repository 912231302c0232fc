//! Serving an axum router until the process shuts down, and the health endpoints.

use std::net::SocketAddr;

use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const LIVE_PATH: &str = "/health/live";
pub const READY_PATH: &str = "/health/ready";

/// Binds `addr`, logging where it listens.
pub async fn bind(addr: &str, what: &str) -> anyhow::Result<TcpListener> {
    use anyhow::Context as _;
    let listener = TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr} for {what}"))?;
    let local: SocketAddr = listener.local_addr().context("listener has no address")?;
    tracing::info!(%local, "{what} listening");
    Ok(listener)
}

/// `listener` with Nagle's algorithm off, which the connections it accepts inherit: a response
/// written in more than one piece is not held back waiting for the client's delayed ACK.
pub fn without_nagle(listener: TcpListener) -> TcpListener {
    if let Err(error) = socket2::SockRef::from(&listener).set_tcp_nodelay(true) {
        tracing::warn!(%error, "cannot turn Nagle's algorithm off on the listener");
    }
    listener
}

/// Serves `router` until `token` is cancelled, then finishes in-flight requests.
pub async fn serve(listener: TcpListener, router: Router, token: CancellationToken) -> anyhow::Result<()> {
    axum::serve(without_nagle(listener), router).with_graceful_shutdown(async move { token.cancelled().await }).await?;
    Ok(())
}

/// `GET /health/live` (always 200 while the process runs) and `GET /health/ready`
/// (200 when `ready` says so, 503 otherwise).
pub fn health_router<F, Fut>(ready: F) -> Router
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    Router::new().route(LIVE_PATH, get(|| async { Json(serde_json::json!({"status": "live"})) })).route(
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

/// `true` when `headers` carry `Authorization: Bearer <expected>`; the token is compared without
/// an early exit on the first differing byte.
pub fn bearer_matches(headers: &HeaderMap, expected: &str) -> bool {
    let presented = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    presented.is_some_and(|token| constant_time_eq(token.as_bytes(), expected.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_match_exactly() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(AUTHORIZATION, value.parse().unwrap());
            headers
        };
        assert!(bearer_matches(&with("Bearer token"), "token"));
        assert!(bearer_matches(&with("bearer  token "), "token"));
        assert!(!bearer_matches(&with("Bearer tokem"), "token"));
        assert!(!bearer_matches(&with("Bearer token2"), "token"));
        assert!(!bearer_matches(&with("Basic token"), "token"));
        assert!(!bearer_matches(&HeaderMap::new(), "token"));
    }
}
