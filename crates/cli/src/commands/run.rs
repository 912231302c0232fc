//! `eventline run <service>`: one consumer service as a process of its own (what each
//! container of docker-compose.yml runs), with the sections `telemetry`, `kafka`,
//! `schema_registry`, `database` and its own `[consumers.<service>]`.

use std::path::Path;

use anyhow::bail;
use clap::Args;
use eventline_common::config::Section;
use eventline_common::service;
use eventline_common::telemetry::{self, TelemetrySettings};

use crate::services;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The consumer service (see `eventline run --list`).
    #[arg(required_unless_present = "list")]
    pub service: Option<String>,
    /// List the consumer services.
    #[arg(long)]
    pub list: bool,
}

pub async fn run(config_file: Option<&Path>, args: RunArgs) -> anyhow::Result<()> {
    if args.list {
        for name in services::consumer_names() {
            println!("{name}");
        }
        return Ok(());
    }
    let name = args.service.unwrap_or_default();
    let Some(entry) = services::consumer(&name) else {
        bail!("no consumer service `{name}` (known: {})", services::consumer_names().join(", "));
    };
    let source = services::config(config_file)?;
    let telemetry_settings: TelemetrySettings = source.section(Section::Telemetry)?;
    telemetry::init(&telemetry_settings);
    service::main(entry, source).await
}
