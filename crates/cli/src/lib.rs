//! The `eventline` command: runs the whole system locally (`up`) and carries the operator tools.

pub mod admin;
pub mod commands;
pub mod services;
pub mod settings;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "eventline", version, about = "Eventline: an event-driven backend on a Kafka backbone")]
pub struct Cli {
    /// A TOML config file (sections: kafka, database, registry, schema_registry, telemetry, ingest,
    /// outbox_relay, admin, up, and consumers.<name> per consumer service).
    /// Environment variables EVENTLINE_<SECTION>__<KEY> override it.
    #[arg(long, global = true, env = "EVENTLINE_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole system locally: an Apache Kafka broker, the schema registry, every service.
    Up(commands::up::UpArgs),
    /// Run one consumer service alone (`eventline run projector`; `--list` names them).
    Run(commands::run::RunArgs),
    /// Publish NDJSON events from a file or stdin (validated like HTTP ingest).
    Publish(commands::publish::PublishArgs),
    /// Prepare an existing cluster: create the catalog's topics and register its schemas.
    Setup(commands::setup::SetupArgs),
    /// The event catalog and its schemas in the registry.
    #[command(subcommand)]
    Schemas(commands::schemas::SchemasCommand),
    /// Consumer groups: committed offsets, end offsets and lag (`groups describe GROUP`).
    Groups(commands::groups::GroupsArgs),
    /// Read a topic from a position and print its events decoded into JSON.
    Tail(commands::tail::TailArgs),
    /// Reset a consumer group's offsets (earliest, latest, a date-time, a shift, an exact offset):
    /// shows the plan, applies it with --execute, refuses while the group has live members.
    Replay(commands::replay::ReplayArgs),
    /// A consumer group's dead letters: list them, show one, redrive them once the cause is fixed.
    Dlq(commands::dlq::DlqArgs),
    /// Build a read model again from the start of the log beside the live one, swap it in
    /// atomically, keep the old one for --rollback; --status lists the generations.
    Rebuild(commands::rebuild::RebuildArgs),
    /// Serve the admin HTTP API (groups, replay, dead letters) behind `admin.token`.
    Admin,
}

pub async fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Up(args) => commands::up::run(cli.config.as_deref(), args).await,
        Command::Run(args) => commands::run::run(cli.config.as_deref(), args).await,
        Command::Publish(args) => commands::publish::run(cli.config.as_deref(), args).await,
        Command::Setup(args) => commands::setup::run(cli.config.as_deref(), args).await,
        Command::Schemas(command) => commands::schemas::run(cli.config.as_deref(), command).await,
        Command::Groups(args) => commands::groups::run(cli.config.as_deref(), args).await,
        Command::Tail(args) => commands::tail::run(cli.config.as_deref(), args).await,
        Command::Replay(args) => commands::replay::run(cli.config.as_deref(), args).await,
        Command::Dlq(args) => commands::dlq::run(cli.config.as_deref(), args).await,
        Command::Rebuild(args) => commands::rebuild::run(cli.config.as_deref(), args).await,
        Command::Admin => admin::run(cli.config.as_deref()).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
