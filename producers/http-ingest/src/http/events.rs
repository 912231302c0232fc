//! `POST /v1/events` and `POST /v1/events:batch`.
//!
//! The work of a request runs in a task of its own, so a client that hangs up mid-request does
//! not leave events published but unrecorded: the task finishes, records, and only its answer is
//! lost (a retry with the same key or event ids gets it).

use std::future::Future;

use axum::extract::State;
use serde_json::{json, Value as Json};
use tracing::Instrument as _;
use uuid::Uuid;

use super::body::{self, BodyKind};
use super::error::{Answer, ApiError, Problem};
use super::extract::{EventBody, RequestContext};
use super::{AppState, BATCH_PATH, EVENTS_PATH};
use crate::idempotency::{request_fingerprint, Claim, Completion, IdempotencyKey};
use crate::ingest::{error_chain, Caller, ItemOutcome};

pub async fn publish_one(
    State(state): State<AppState>,
    caller: Caller,
    context: RequestContext,
    body: EventBody,
) -> Result<Answer, ApiError> {
    if body.kind != BodyKind::Json {
        return Err(ApiError::UnsupportedMediaType(format!(
            "{EVENTS_PATH} takes one event as {}; send NDJSON to {BATCH_PATH}",
            body::JSON
        )));
    }
    let fingerprint = request_fingerprint(EVENTS_PATH, body.kind.label(), &body.bytes);
    let key = context.idempotency_key.clone();
    let work_state = state.clone();
    let work_caller = caller.clone();
    idempotent(state, caller, key, fingerprint, async move {
        let json = match body::single(&body.bytes) {
            Ok(json) => json,
            Err(error) => return error.into_answer(),
        };
        let outcomes =
            work_state.ingest.publish(&work_caller, context.origin, vec![Ok(json)], context.idempotency_key).await;
        match outcomes.map(|mut o| o.pop()) {
            Ok(Some(outcome)) => single_answer(&work_state, outcome),
            Ok(None) => ApiError::Unavailable("no outcome for the event".into()).into_answer(),
            Err(error) => ApiError::Unavailable(Box::new(error)).into_answer(),
        }
    })
    .await
}

pub async fn publish_batch(
    State(state): State<AppState>,
    caller: Caller,
    context: RequestContext,
    body: EventBody,
) -> Result<Answer, ApiError> {
    let fingerprint = request_fingerprint(BATCH_PATH, body.kind.label(), &body.bytes);
    let key = context.idempotency_key.clone();
    let work_state = state.clone();
    let work_caller = caller.clone();
    idempotent(state, caller, key, fingerprint, async move {
        let batch = match body::batch(body.kind, &body.bytes, work_state.max_batch) {
            Ok(batch) => batch,
            Err(error) => return error.into_answer(),
        };
        let outcomes =
            work_state.ingest.publish(&work_caller, context.origin, batch.items, context.idempotency_key).await;
        match outcomes {
            Ok(outcomes) => batch_answer(&work_state, outcomes, batch.lines.as_deref()),
            Err(error) => ApiError::Unavailable(Box::new(error)).into_answer(),
        }
    })
    .await
}

/// Runs `work` in its own task; with an `Idempotency-Key`, only after claiming it, and a
/// final answer is remembered for retries.
async fn idempotent(
    state: AppState,
    caller: Caller,
    key: Option<IdempotencyKey>,
    fingerprint: String,
    work: impl Future<Output = Answer> + Send + 'static,
) -> Result<Answer, ApiError> {
    let task = async move {
        let Some(key) = key else { return Ok(work.await) };
        let store = state.ingest.store();
        let scope = caller.idempotency_scope;
        let claim_id = Uuid::new_v4().to_string();
        let claims = store
            .claim(&scope, &claim_id, &[(key.as_str().to_owned(), fingerprint)])
            .await
            .map_err(|e| ApiError::Unavailable(Box::new(e)))?;
        match claims.into_iter().next() {
            Some(Claim::Claimed) => {
                let answer = work.await;
                let recorded = if answer.is_final() {
                    let response = serde_json::to_string(&answer).unwrap_or_default();
                    let done = [Completion { key: key.as_str().to_owned(), status: answer.status, response }];
                    store.complete(&scope, &claim_id, &done).await
                } else {
                    store.release(&scope, &claim_id, &[key.as_str().to_owned()]).await
                };
                if let Err(error) = recorded {
                    tracing::error!(error = %error_chain(&error), "cannot record the outcome of an Idempotency-Key");
                }
                Ok(answer)
            }
            Some(Claim::Completed { same_fingerprint: true, response, .. }) => {
                let answer: Answer = serde_json::from_str(&response).map_err(|e| ApiError::Unavailable(Box::new(e)))?;
                Ok(Answer { replayed: true, ..answer })
            }
            Some(Claim::Completed { same_fingerprint: false, .. }) => Err(ApiError::IdempotencyKeyReused),
            Some(Claim::InFlight) | None => Err(ApiError::RequestInProgress),
        }
    };
    tokio::spawn(task.instrument(tracing::Span::current())).await.map_err(|e| ApiError::Unavailable(Box::new(e)))?
}

fn single_answer(state: &AppState, outcome: ItemOutcome) -> Answer {
    match outcome {
        ItemOutcome::Published(result) => Answer::json(201, json!(result)),
        ItemOutcome::Replayed(result) => Answer { replayed: true, ..Answer::json(201, json!(result)) },
        ItemOutcome::Forbidden { event_type, needed_scope } => Answer {
            www_authenticate: Some(format!(
                "Bearer realm=\"{}\", error=\"insufficient_scope\", scope=\"{needed_scope}\"",
                super::error::REALM
            )),
            ..Answer::problem(Problem::Forbidden, 403, forbidden_detail(&event_type, &needed_scope))
        },
        other => {
            let (problem, detail) = failure(&other);
            let status = other.status();
            let mut answer = Answer::problem(problem, status, detail);
            if let ItemOutcome::Invalid { errors, .. } = &other {
                answer = answer.with_errors(errors);
            }
            if status == 503 {
                answer = answer.retry_after(state.retry_after);
            } else if status == 409 {
                answer = answer.retry_after(super::error::DEFAULT_RETRY_AFTER);
            }
            answer
        }
    }
}

/// The answer to a batch: 200 when every event was published; 207 when some were and some were
/// not; 503 (with `Retry-After`) when the broker did not acknowledge some; otherwise 4xx (the
/// events' common status, or 400 when they differ). Every answer lists every event's outcome.
fn batch_answer(state: &AppState, outcomes: Vec<ItemOutcome>, lines: Option<&[usize]>) -> Answer {
    let published = outcomes.iter().filter(|o| o.status() < 300).count();
    let failed = outcomes.len() - published;
    let unavailable = outcomes.iter().filter(|o| matches!(o, ItemOutcome::Unavailable)).count();
    let statuses: Vec<u16> = outcomes.iter().map(ItemOutcome::status).filter(|s| *s >= 300).collect();
    let results: Vec<Json> = outcomes
        .iter()
        .enumerate()
        .map(|(index, outcome)| item_json(index, lines.and_then(|l| l.get(index)).copied(), outcome))
        .collect();
    let summary = json!({"published": published, "failed": failed, "results": results});
    if failed == 0 {
        return Answer::json(200, summary);
    }
    let mut answer = if unavailable > 0 {
        let detail = format!(
            "the broker did not acknowledge {unavailable} of {} events within {:?}; {published} were published (see results); retry the others",
            outcomes.len(),
            state.broker_wait
        );
        Answer::problem(Problem::BrokerUnavailable, 503, detail).retry_after(state.retry_after)
    } else if published > 0 {
        return Answer::json(207, summary);
    } else {
        let common = statuses.first().copied().filter(|first| statuses.iter().all(|s| s == first)).unwrap_or(400);
        let detail = format!("none of the {failed} events was published; each result says why");
        let answer = Answer::problem(Problem::BatchRejected, common, detail);
        if common == 409 {
            answer.retry_after(super::error::DEFAULT_RETRY_AFTER)
        } else {
            answer
        }
    };
    for field in ["published", "failed", "results"] {
        answer.body[field] = summary[field].clone();
    }
    answer
}

fn item_json(index: usize, line: Option<usize>, outcome: &ItemOutcome) -> Json {
    let mut item = match outcome {
        ItemOutcome::Published(result) => json!(result),
        ItemOutcome::Replayed(result) => {
            let mut item = json!(result);
            item["replayed"] = json!(true);
            item
        }
        other => {
            let (problem, detail) = failure(other);
            let mut item = json!({"problem": problem.uri(), "title": problem.title(), "detail": detail});
            match other {
                ItemOutcome::Invalid { errors, .. } => item["errors"] = json!(errors),
                ItemOutcome::Malformed(error) => item["errors"] = json!([error]),
                _ => {}
            }
            item
        }
    };
    item["index"] = json!(index);
    item["status"] = json!(outcome.status());
    if let Some(line) = line {
        item["line"] = json!(line);
    }
    item
}

fn failure(outcome: &ItemOutcome) -> (Problem, String) {
    match outcome {
        ItemOutcome::Invalid { unknown_type: true, errors } => {
            (Problem::UnknownEventType, errors.first().map(|e| e.message.clone()).unwrap_or_default())
        }
        ItemOutcome::Invalid { errors, .. } => {
            let first = errors.first().map(ToString::to_string).unwrap_or_default();
            let detail = match errors.len() {
                1 => first,
                n => format!("{n} problems, the first: {first}"),
            };
            (Problem::InvalidEvent, detail)
        }
        ItemOutcome::Malformed(error) => (Problem::MalformedJson, error.message.clone()),
        ItemOutcome::Forbidden { event_type, needed_scope } => {
            (Problem::Forbidden, forbidden_detail(event_type, needed_scope))
        }
        ItemOutcome::IdConflict { id } => (
            Problem::EventIdConflict,
            format!("event id {id} was already published with different content; give a new event a new id"),
        ),
        ItemOutcome::InFlight { id } => {
            (Problem::EventInProgress, format!("event id {id} is being published by another request; retry shortly"))
        }
        ItemOutcome::Unavailable => {
            (Problem::BrokerUnavailable, "the broker did not acknowledge the event in time; retry".into())
        }
        ItemOutcome::Published(_) | ItemOutcome::Replayed(_) => (Problem::InvalidEvent, String::new()),
    }
}

fn forbidden_detail(event_type: &str, needed_scope: &str) -> String {
    format!("the token does not allow publishing {event_type}; it needs the scope `{needed_scope}`, `publish:<topic>/*` or `publish:*`")
}
