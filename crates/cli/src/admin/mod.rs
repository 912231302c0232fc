//! The admin HTTP API: the operator commands (`groups`, `replay`, `dlq`, `rebuild`) for
//! scripts, behind a bearer token. It calls the same functions as the CLI, so a plan, a
//! listing or an outcome is the same JSON as `--output json` prints.
//!
//! ```text
//! GET  /admin/v1/groups                              every group with its lag
//! GET  /admin/v1/groups/{group}                      per partition: committed, end, lag
//! POST /admin/v1/groups/{group}/replay               {"target": ..., "execute": false} → plan
//! GET  /admin/v1/groups/{group}/dlq                  dead letters (?type=&from_offset=&to_offset=)
//! GET  /admin/v1/groups/{group}/dlq/{partition}/{offset}
//! POST /admin/v1/groups/{group}/dlq/redrive          {"select": ..., "execute": false}
//! GET  /admin/v1/consumers/{name}/generations        a rebuildable consumer's generations
//! POST /admin/v1/consumers/{name}/rollback           make its previous generation active
//! GET  /admin/v1/projector/generations               the same for the projector (kept for
//! POST /admin/v1/projector/rollback                  scripts written before the above)
//! ```
//!
//! Every request needs `Authorization: Bearer <admin.token>`; without a configured token the
//! API does not start. Errors are `application/problem+json` with what is wrong.

mod problem;
mod routes;

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use eventline_common::catalog::Catalog;
use eventline_common::config::{ConfigSource, Secret, Section};
use eventline_common::db::DatabaseSettings;
use eventline_common::kafka::connection::{check_connection, CONNECT_TIMEOUT};
use eventline_common::kafka::KafkaSettings;
use eventline_common::registry_client::SchemaRegistrySettings;
use eventline_common::shutdown::Supervisor;
use eventline_common::telemetry::{self, TelemetrySettings};
use serde::{Deserialize, Serialize};

pub use problem::Problem;

/// The `[admin]` section.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSettings {
    /// Where the admin API listens.
    pub listen: String,
    /// The bearer token every request must carry. Empty: `eventline admin` refuses to start;
    /// `eventline up` makes one and writes it to `<up.data_dir>/admin-token`.
    pub token: Secret,
    /// How long a shutdown may take to finish in-flight requests.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: std::time::Duration,
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8084".to_owned(),
            token: Secret::default(),
            drain_timeout: std::time::Duration::from_secs(10),
        }
    }
}

/// What the handlers need: the same settings the CLI commands read.
#[derive(Clone)]
pub struct AdminState {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) token: Secret,
    pub(crate) kafka: KafkaSettings,
    pub(crate) database: DatabaseSettings,
    pub(crate) schema_registry: SchemaRegistrySettings,
    /// The configuration, for the consumers' own settings (their groups).
    pub(crate) source: ConfigSource,
    pub(crate) catalog: Catalog,
}

impl AdminState {
    pub fn new(
        token: Secret,
        kafka: KafkaSettings,
        database: DatabaseSettings,
        schema_registry: SchemaRegistrySettings,
        source: ConfigSource,
        catalog: Catalog,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(!token.is_empty(), "the admin API needs a token: set admin.token (EVENTLINE_ADMIN__TOKEN)");
        Ok(Self { inner: Arc::new(Inner { token, kafka, database, schema_registry, source, catalog }) })
    }
}

/// The admin API's routes, every one behind the token.
pub fn router(state: AdminState) -> Router {
    routes::routes().layer(axum::middleware::from_fn_with_state(state.clone(), require_token)).with_state(state)
}

async fn require_token(State(state): State<AdminState>, request: Request, next: Next) -> Response {
    if eventline_common::http::bearer_matches(request.headers(), state.inner.token.expose()) {
        next.run(request).await
    } else {
        Problem::unauthorized().into_response()
    }
}

/// `eventline admin`: serves the admin API until Ctrl-C / SIGTERM.
pub async fn run(config_file: Option<&Path>) -> anyhow::Result<()> {
    let source = crate::services::config(config_file)?;
    let telemetry_settings: TelemetrySettings = source.section(Section::Telemetry)?;
    telemetry::init(&telemetry_settings);
    let settings: AdminSettings = source.section(Section::Admin)?;
    let kafka: KafkaSettings = source.section(Section::Kafka)?;
    check_connection(&kafka, CONNECT_TIMEOUT).await?;
    let state = AdminState::new(
        settings.token.clone(),
        kafka,
        source.section(Section::Database)?,
        source.section(Section::SchemaRegistry)?,
        source.clone(),
        Catalog::embedded().context("the embedded catalog is invalid")?,
    )?;
    let listener = eventline_common::http::bind(&settings.listen, "admin API").await?;
    let mut supervisor = Supervisor::new(settings.drain_timeout);
    let token = supervisor.token();
    supervisor.spawn("admin-api", eventline_common::http::serve(listener, router(state), token));
    supervisor.run_until_stopped().await
}
