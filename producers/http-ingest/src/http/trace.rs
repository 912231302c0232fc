//! A span per request in the caller's trace: the incoming W3C `traceparent` continues (a new
//! trace starts when there is none or it is malformed), and the request's own span context goes
//! into [`RequestTrace`] so published events carry it in their Kafka headers.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use eventline_common::envelope::{header::TRACEPARENT, TraceParent};
use tracing::Instrument as _;

use super::extract::RequestTrace;

pub async fn trace_context(mut request: Request, next: Next) -> Response {
    let incoming =
        request.headers().get(TRACEPARENT).and_then(|v| v.to_str().ok()).and_then(|text| TraceParent::parse(text).ok());
    let context = incoming.map_or_else(TraceParent::new_root, |parent| parent.child());
    request.extensions_mut().insert(RequestTrace(context));
    let span = tracing::info_span!(
        "ingest_request",
        method = %request.method(),
        path = %request.uri().path(),
        trace_id = %format!("{:032x}", context.trace_id),
        span_id = %format!("{:016x}", context.span_id),
        client = tracing::field::Empty,
    );
    next.run(request).instrument(span).await
}
