//! The use case behind both publish routes: check each event's scope, validate and prepare it,
//! claim its id, publish what may be published, and remember the outcomes. One result per
//! event, in input order; valid events are published even when a neighbour is not.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventline_common::avro_json::FieldError;
use eventline_common::publish::{prepare, InvalidEvent, Origin, PreparedEvent, Publisher};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use uuid::Uuid;

use crate::auth::Scopes;
use crate::idempotency::{self, Claim, Completion, IdempotencyKey, IdempotencyStore, StoreError, EVENT_SCOPE};
use crate::metrics::{IngestMetrics, Outcome};

/// Batches larger than this are prepared (validated and Avro-encoded) off the async workers.
const BLOCKING_PREPARE_AT: usize = 32;
/// Extra time past the producer's delivery timeout before a publish is given up here too.
const PUBLISH_GRACE: Duration = Duration::from_secs(2);

/// Who is publishing, once authenticated.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The client (JWT `sub`, or the remote address when auth is off): rate limits and logs.
    pub client: String,
    /// Where this caller's `Idempotency-Key`s live.
    pub idempotency_scope: String,
    pub scopes: Scopes,
}

/// One event of a request as read from the body: JSON, or why the text is not JSON.
pub type Item = Result<Json, FieldError>;

/// Where a published event landed: what the query API takes for read-your-writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventResult {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// What became of one event.
#[derive(Debug, Clone, PartialEq)]
pub enum ItemOutcome {
    Published(EventResult),
    /// An NDJSON line that is not JSON.
    Malformed(FieldError),
    /// Its id was published before (or earlier in this request): the original result.
    Replayed(EventResult),
    Invalid {
        unknown_type: bool,
        errors: Vec<FieldError>,
    },
    Forbidden {
        event_type: String,
        needed_scope: String,
    },
    /// The id was already used for a different event.
    IdConflict {
        id: Uuid,
    },
    /// Another request is publishing an event with this id right now.
    InFlight {
        id: Uuid,
    },
    /// The broker did not acknowledge it in time; nothing is remembered, retry.
    Unavailable,
}

impl ItemOutcome {
    pub fn status(&self) -> u16 {
        match self {
            ItemOutcome::Published(_) | ItemOutcome::Replayed(_) => 201,
            ItemOutcome::Malformed(_) => 400,
            ItemOutcome::Invalid { .. } | ItemOutcome::IdConflict { .. } => 422,
            ItemOutcome::Forbidden { .. } => 403,
            ItemOutcome::InFlight { .. } => 409,
            ItemOutcome::Unavailable => 503,
        }
    }

    fn metric(&self) -> Outcome {
        match self {
            ItemOutcome::Published(_) => Outcome::Published,
            ItemOutcome::Replayed(_) => Outcome::Replayed,
            ItemOutcome::Invalid { .. } | ItemOutcome::Malformed(_) => Outcome::Invalid,
            ItemOutcome::Forbidden { .. } => Outcome::Forbidden,
            ItemOutcome::IdConflict { .. } | ItemOutcome::InFlight { .. } => Outcome::Conflict,
            ItemOutcome::Unavailable => Outcome::Unavailable,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("the idempotency store failed")]
    Store(#[from] StoreError),
    #[error("the preparation task failed")]
    Task(#[from] tokio::task::JoinError),
}

/// A prepared event waiting to be published, and the id it must claim first (if any).
struct Ready {
    event: PreparedEvent,
    claim: Option<(String, String)>,
}

/// Where each event stands after preparation.
enum Stage {
    Done(ItemOutcome),
    Ready(Box<Ready>),
    /// Same id and content as the event at that index earlier in the request.
    SameAs(usize),
}

pub struct Ingest {
    publisher: Arc<Publisher>,
    store: IdempotencyStore,
    metrics: IngestMetrics,
    broker_wait: Duration,
}

impl Ingest {
    pub fn new(publisher: Publisher, store: IdempotencyStore, metrics: IngestMetrics, broker_wait: Duration) -> Self {
        Self { publisher: Arc::new(publisher), store, metrics, broker_wait }
    }

    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    pub fn store(&self) -> &IdempotencyStore {
        &self.store
    }

    /// Publishes `items`; events without an `id` in a request with `key` get one derived from it.
    pub async fn publish(
        &self,
        caller: &Caller,
        origin: Origin,
        items: Vec<Item>,
        key: Option<IdempotencyKey>,
    ) -> Result<Vec<ItemOutcome>, IngestError> {
        let count = items.len();
        let publisher = self.publisher.clone();
        let (scopes, scope) = (caller.scopes.clone(), caller.idempotency_scope.clone());
        let work = move || prepare_all(&publisher, &scopes, &origin, items, key.as_ref().map(|k| (scope.as_str(), k)));
        let mut stages = if count > BLOCKING_PREPARE_AT { tokio::task::spawn_blocking(work).await? } else { work() };

        let claim_id = Uuid::new_v4().to_string();
        let claiming: Vec<usize> =
            (0..count).filter(|&i| matches!(&stages[i], Stage::Ready(r) if r.claim.is_some())).collect();
        let keys: Vec<(String, String)> = claiming
            .iter()
            .filter_map(|&i| if let Stage::Ready(r) = &stages[i] { r.claim.clone() } else { None })
            .collect();
        let claims = if keys.is_empty() { Vec::new() } else { self.store.claim(EVENT_SCOPE, &claim_id, &keys).await? };
        for (&index, claim) in claiming.iter().zip(claims) {
            let Stage::Ready(ready) = &stages[index] else { continue };
            let id = ready.event.envelope.id;
            let outcome = match claim {
                Claim::Claimed => continue,
                Claim::Completed { same_fingerprint: false, .. } => ItemOutcome::IdConflict { id },
                Claim::Completed { response, .. } => match serde_json::from_str::<EventResult>(&response) {
                    Ok(result) => ItemOutcome::Replayed(result),
                    Err(_) => ItemOutcome::IdConflict { id },
                },
                Claim::InFlight => ItemOutcome::InFlight { id },
            };
            stages[index] = Stage::Done(outcome);
        }

        self.publish_ready(&claim_id, &mut stages).await;

        let mut outcomes: Vec<ItemOutcome> = Vec::with_capacity(count);
        for stage in stages {
            let outcome = match stage {
                Stage::Done(outcome) => outcome,
                Stage::SameAs(first) => match outcomes.get(first) {
                    Some(ItemOutcome::Published(result) | ItemOutcome::Replayed(result)) => {
                        ItemOutcome::Replayed(result.clone())
                    }
                    Some(other) => other.clone(),
                    None => ItemOutcome::Unavailable,
                },
                Stage::Ready(_) => ItemOutcome::Unavailable,
            };
            match &outcome {
                ItemOutcome::Invalid { errors, .. } => self.metrics.event_invalid(errors.len()),
                other => self.metrics.event_finished(other.metric()),
            }
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    /// Publishes every ready event in input order, then records or releases their claims.
    async fn publish_ready(&self, claim_id: &str, stages: &mut [Stage]) {
        let mut indexes = Vec::new();
        let mut events = Vec::new();
        let mut claims = Vec::new();
        for (i, stage) in stages.iter_mut().enumerate() {
            if let Stage::Ready(_) = stage {
                if let Stage::Ready(ready) = std::mem::replace(stage, Stage::Done(ItemOutcome::Unavailable)) {
                    indexes.push(i);
                    claims.push(ready.claim.map(|(key, _)| key));
                    events.push(ready.event);
                }
            }
        }
        if events.is_empty() {
            return;
        }
        let started = Instant::now();
        let publishing = tokio::time::timeout(self.broker_wait + PUBLISH_GRACE, self.publisher.publish_all(&events));
        let results = publishing.await.unwrap_or_default();
        let (mut done, mut release, mut failed) = (Vec::new(), Vec::new(), 0);
        for (k, (index, event)) in indexes.iter().zip(&events).enumerate() {
            let outcome = match results.get(k) {
                Some(Ok(position)) => {
                    let result = EventResult {
                        id: event.envelope.id,
                        event_type: event.event_type.clone(),
                        topic: position.topic.clone(),
                        partition: position.partition,
                        offset: position.offset,
                    };
                    if let Some(key) = &claims[k] {
                        let response = serde_json::to_string(&result).unwrap_or_default();
                        done.push(Completion { key: key.clone(), status: 201, response });
                    }
                    ItemOutcome::Published(result)
                }
                Some(Err(error)) => {
                    if failed == 0 {
                        self.metrics.broker_unavailable(events.len() - k, error);
                    }
                    failed += 1;
                    release.extend(claims[k].clone());
                    ItemOutcome::Unavailable
                }
                None => {
                    failed += 1;
                    release.extend(claims[k].clone());
                    ItemOutcome::Unavailable
                }
            };
            stages[*index] = Stage::Done(outcome);
        }
        if failed < events.len() {
            self.metrics.events_published(events.len() - failed, started.elapsed());
        }
        if let Err(error) = self.store.complete(EVENT_SCOPE, claim_id, &done).await {
            // Published all the same; a retry after the claim goes stale publishes the same id again.
            tracing::error!(error = %error_chain(&error), "cannot record published event ids");
        }
        if let Err(error) = self.store.release(EVENT_SCOPE, claim_id, &release).await {
            tracing::error!(error = %error_chain(&error), "cannot release event ids that were not published");
        }
    }
}

/// Validates and prepares every item (pure CPU work: JSON to Avro, framing).
fn prepare_all(
    publisher: &Publisher,
    scopes: &Scopes,
    origin: &Origin,
    items: Vec<Item>,
    derive_ids: Option<(&str, &IdempotencyKey)>,
) -> Vec<Stage> {
    let contracts = publisher.contracts();
    let mut first_with_id: HashMap<String, (usize, String)> = HashMap::new();
    let mut stages = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let mut json = match item {
            Ok(json) => json,
            Err(error) => {
                stages.push(Stage::Done(ItemOutcome::Malformed(error)));
                continue;
            }
        };
        if let (Some((scope, key)), Json::Object(object)) = (derive_ids, &mut json) {
            if object.get("id").is_none_or(Json::is_null) {
                let id = idempotency::derived_event_id(scope, key, index);
                object.insert("id".to_owned(), Json::String(id.to_string()));
            }
        }
        if let Some(registered) = json.get("type").and_then(Json::as_str).and_then(|t| contracts.event(t)) {
            if !scopes.allows(&registered.spec) {
                stages.push(Stage::Done(ItemOutcome::Forbidden {
                    event_type: registered.spec.name.clone(),
                    needed_scope: Scopes::needed_for(&registered.spec),
                }));
                continue;
            }
        }
        let event = match prepare(contracts, &json, origin) {
            Ok(event) => event,
            Err(invalid) => {
                let unknown_type = matches!(invalid, InvalidEvent::UnknownType(_));
                stages.push(Stage::Done(ItemOutcome::Invalid { unknown_type, errors: invalid.errors() }));
                continue;
            }
        };
        let has_id = json.get("id").is_some_and(|id| !id.is_null());
        let claim = has_id.then(|| (event.envelope.id.to_string(), idempotency::event_fingerprint(&json)));
        if let Some((key, fingerprint)) = &claim {
            if let Some((first, first_fingerprint)) = first_with_id.get(key) {
                stages.push(if first_fingerprint == fingerprint {
                    Stage::SameAs(*first)
                } else {
                    Stage::Done(ItemOutcome::IdConflict { id: event.envelope.id })
                });
                continue;
            }
            first_with_id.insert(key.clone(), (index, fingerprint.clone()));
        }
        stages.push(Stage::Ready(Box::new(Ready { event, claim })));
    }
    stages
}

pub use eventline_common::telemetry::error_chain;

/// Shared with the HTTP layer.
pub type SharedIngest = Arc<Ingest>;
