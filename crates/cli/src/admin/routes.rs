//! The admin API's handlers: each parses, calls the function the CLI command calls, and
//! answers its result as JSON (or a [`Problem`]).

use std::collections::BTreeMap;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use eventline_common::generations::{GenerationError, GenerationsStatus, RollbackSummary};
use eventline_common::kafka::consumer::lag::LagError;
use eventline_common::kafka::consumer::OffsetStore;
use eventline_common::registry_client::RegistryClient;
use eventline_common::service::ConsumerService as _;
use eventline_projector::ProjectorService;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::problem::Problem;
use super::AdminState;
use crate::commands::dlq::{self, DeadLetterDetail, DlqListing, ListQuery, RedriveOutcome, RedriveRequest, ShowQuery};
use crate::commands::groups::{self, GroupDescription, GroupList};
use crate::commands::rebuild;
use crate::commands::replay::{self, ReplayOutcome, ReplayPlan, ReplayRequest, ReplayTarget, TopicSelection};

type Answer<T> = Result<Json<T>, Problem>;

pub(super) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/admin/v1/groups", get(list_groups))
        .route("/admin/v1/groups/{group}", get(describe_group))
        .route("/admin/v1/groups/{group}/replay", post(replay_group))
        .route("/admin/v1/groups/{group}/dlq", get(list_dead_letters))
        .route("/admin/v1/groups/{group}/dlq/redrive", post(redrive_dead_letters))
        .route("/admin/v1/groups/{group}/dlq/{partition}/{offset}", get(show_dead_letter))
        .route("/admin/v1/consumers/{name}/generations", get(consumer_generations))
        .route("/admin/v1/consumers/{name}/rollback", post(consumer_rollback))
        .route("/admin/v1/projector/generations", get(projector_generations))
        .route("/admin/v1/projector/rollback", post(projector_rollback))
}

impl AdminState {
    /// The database's offset store, or `None` when there is no database to read (a missing
    /// SQLite file): transactional groups keep their offsets there.
    async fn store(&self) -> Result<Option<OffsetStore>, Problem> {
        let database = &self.inner.database;
        match groups::open_store(database).await {
            Ok(store) => Ok(Some(store)),
            Err(_) if groups::missing_sqlite_file(database).is_some() => Ok(None),
            Err(reason) => Err(Problem::unavailable(format!("cannot open the database: {reason}"))),
        }
    }
}

async fn list_groups(State(state): State<AdminState>) -> Answer<GroupList> {
    let store = state.store().await?;
    groups::list(&state.inner.kafka, store.as_ref(), &state.inner.catalog, &[])
        .await
        .map(Json)
        .map_err(|error| Problem::unavailable(format!("{error:#}")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DescribeParams {
    /// Comma-separated topics (default: the topics the group has offsets on).
    topics: Option<String>,
}

async fn describe_group(
    State(state): State<AdminState>,
    Path(group): Path<String>,
    Query(params): Query<DescribeParams>,
) -> Answer<GroupDescription> {
    let store = state.store().await?;
    let topics: Vec<String> = params
        .topics
        .iter()
        .flat_map(|t| t.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(String::from)
        .collect();
    groups::describe(&state.inner.kafka, store.as_ref(), &state.inner.catalog, &group, &topics).await.map(Json).map_err(
        |error| match error.downcast_ref::<LagError>() {
            Some(LagError::UnknownTopic(_)) => Problem::bad_request(format!("{error:#}")),
            Some(_) => Problem::unavailable(format!("{error:#}")),
            // The only error that is not the broker's or the database's: no offsets anywhere.
            None => Problem::not_found(format!("{error:#}")),
        },
    )
}

/// `POST /admin/v1/groups/{group}/replay`: the flags of `eventline replay` as JSON.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayBody {
    /// `"to_earliest"`, `"to_latest"`, `{"to_datetime": "2026-05-01T12:00:00Z"}`,
    /// `{"shift_by": -100}` or `{"to_offset": 42}`.
    target: ReplayTarget,
    #[serde(default)]
    topics: Vec<TopicSelection>,
    #[serde(default)]
    members_stopped: bool,
    #[serde(default)]
    execute: bool,
}

#[derive(Debug, Serialize)]
struct ReplayAnswer {
    plan: ReplayPlan,
    /// Present when `execute` was true.
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<ReplayOutcome>,
}

async fn replay_group(
    State(state): State<AdminState>,
    Path(group): Path<String>,
    body: Result<Json<ReplayBody>, JsonRejection>,
) -> Answer<ReplayAnswer> {
    let Json(body) = body.map_err(|rejection| Problem::bad_request(rejection.body_text()))?;
    let request =
        ReplayRequest { group, topics: body.topics, target: body.target, members_stopped: body.members_stopped };
    let store = state.store().await?;
    let plan = replay::plan(&state.inner.kafka, store.as_ref(), &request).await?;
    let outcome =
        if body.execute { Some(replay::execute(&state.inner.kafka, store.as_ref(), &plan).await?) } else { None };
    Ok(Json(ReplayAnswer { plan, outcome }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeadLetterParams {
    #[serde(rename = "type")]
    event_type: Option<String>,
    dlq_topic: Option<String>,
    partition: Option<i32>,
    from_offset: Option<i64>,
    to_offset: Option<i64>,
}

async fn list_dead_letters(
    State(state): State<AdminState>,
    Path(group): Path<String>,
    Query(params): Query<DeadLetterParams>,
) -> Answer<DlqListing> {
    let query = ListQuery {
        group,
        dlq_topic: params.dlq_topic,
        event_type: params.event_type,
        partition: params.partition,
        from_offset: params.from_offset,
        to_offset: params.to_offset,
    };
    Ok(Json(dlq::list(&state.inner.kafka, &state.inner.catalog, &query).await?))
}

async fn show_dead_letter(
    State(state): State<AdminState>,
    Path((group, partition, offset)): Path<(String, i32, i64)>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Answer<DeadLetterDetail> {
    let registry = RegistryClient::new(&state.inner.schema_registry)
        .map_err(|error| Problem::unavailable(format!("the schema registry client: {error:#}")))?;
    let query = ShowQuery { group, dlq_topic: params.get("dlq_topic").cloned(), partition, offset };
    Ok(Json(dlq::show(&state.inner.kafka, &registry, &query).await?))
}

/// `POST /admin/v1/groups/{group}/dlq/redrive`: the fields of [`RedriveRequest`] except the
/// group, e.g. `{"select": "all", "execute": true}` or
/// `{"select": {"event_type": "OrderPlaced"}, "to": "original"}`.
async fn redrive_dead_letters(
    State(state): State<AdminState>,
    Path(group): Path<String>,
    body: Result<Json<Value>, JsonRejection>,
) -> Answer<RedriveOutcome> {
    let Json(mut body) = body.map_err(|rejection| Problem::bad_request(rejection.body_text()))?;
    let Some(fields) = body.as_object_mut() else {
        return Err(Problem::bad_request("the body must be a JSON object"));
    };
    if fields.contains_key("group") {
        return Err(Problem::bad_request("the group is in the path, not in the body"));
    }
    fields.insert("group".to_owned(), Value::String(group));
    let request: RedriveRequest = serde_json::from_value(body)
        .map_err(|error| Problem::bad_request(format!("invalid redrive request: {error}")))?;
    // Runs to the end of the selection; a client that disconnects stops it after the record in
    // flight, and a new request continues (letters sent are recorded).
    let outcome =
        dlq::redrive(&state.inner.kafka, &state.inner.catalog, &request, |_| {}, CancellationToken::new()).await?;
    Ok(Json(outcome))
}

async fn consumer_generations(State(state): State<AdminState>, Path(name): Path<String>) -> Answer<GenerationsStatus> {
    rebuildable(&name)?;
    let inner = &state.inner;
    rebuild::status(&name, &inner.database, &inner.source)
        .await
        .map(Json)
        .map_err(|error| Problem::unavailable(format!("{error:#}")))
}

/// Rebuilds themselves run long and report progress: they are `eventline rebuild <name>`'s;
/// a rollback is one transaction.
async fn consumer_rollback(State(state): State<AdminState>, Path(name): Path<String>) -> Answer<RollbackSummary> {
    rebuildable(&name)?;
    let inner = &state.inner;
    rebuild::rollback(&name, &inner.database, &inner.source).await.map(Json).map_err(|error| {
        match error.downcast_ref::<GenerationError>() {
            Some(GenerationError::Transition(_) | GenerationError::Conflict { .. }) => {
                Problem::conflict(format!("{error:#}"))
            }
            _ => Problem::unavailable(format!("{error:#}")),
        }
    })
}

/// 404 unless `name` is a consumer that can be rebuilt.
fn rebuildable(name: &str) -> Result<(), Problem> {
    rebuild::rebuildable(name).map(|_| ()).map_err(|error| Problem::not_found(format!("{error:#}")))
}

async fn projector_generations(state: State<AdminState>) -> Answer<GenerationsStatus> {
    consumer_generations(state, Path(ProjectorService::NAME.to_owned())).await
}

async fn projector_rollback(state: State<AdminState>) -> Answer<RollbackSummary> {
    consumer_rollback(state, Path(ProjectorService::NAME.to_owned())).await
}
