//! `eventline schemas`: the catalog, and its schemas in the registry.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use eventline_common::catalog::Catalog;
use eventline_common::config::Section;
use eventline_common::contracts::Contracts;
use eventline_common::registry_client::{RegistryClient, SchemaRegistrySettings};

#[derive(Debug, Subcommand)]
pub enum SchemasCommand {
    /// Every event type: topic, key field, registry subject.
    List {
        /// A schemas folder laid out like the repository's `schemas/` (default: the built-in one).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Register every schema of the catalog with the schema registry.
    Register {
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Check every schema of the catalog against the registry's latest version of its subject;
    /// exits non-zero when one would be refused as incompatible.
    Check {
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

fn catalog(dir: Option<&Path>) -> anyhow::Result<Catalog> {
    match dir {
        Some(dir) => Catalog::load_dir(dir).with_context(|| format!("invalid catalog in {}", dir.display())),
        None => Catalog::embedded().context("the embedded catalog is invalid"),
    }
}

fn client(config_file: Option<&Path>) -> anyhow::Result<RegistryClient> {
    let settings: SchemaRegistrySettings = crate::services::config(config_file)?.section(Section::SchemaRegistry)?;
    Ok(RegistryClient::new(&settings)?)
}

pub async fn run(config_file: Option<&Path>, command: SchemasCommand) -> anyhow::Result<()> {
    match command {
        SchemasCommand::List { dir } => {
            let catalog = catalog(dir.as_deref())?;
            println!("{:<22} {:<10} {:<12} subject", "event type", "topic", "key field");
            for event in catalog.events() {
                println!("{:<22} {:<10} {:<12} {}", event.name, event.topic, event.key_field, event.subject());
            }
            Ok(())
        }
        SchemasCommand::Register { dir } => {
            let catalog = catalog(dir.as_deref())?;
            let client = client(config_file)?;
            let contracts = Contracts::register(catalog, &client).await?;
            for event in contracts.events() {
                println!("{:<22} id {:<5} {}", event.spec.name, event.schema_id, event.spec.subject());
            }
            Ok(())
        }
        SchemasCommand::Check { dir } => {
            let catalog = catalog(dir.as_deref())?;
            let client = client(config_file)?;
            let mut refused = Vec::new();
            for event in catalog.events() {
                let compatible = client
                    .is_compatible(&event.subject(), &event.schema_json)
                    .await
                    .with_context(|| format!("cannot check {}", event.subject()))?;
                println!("{:<22} {}", event.name, if compatible { "compatible" } else { "INCOMPATIBLE" });
                if !compatible {
                    refused.push(event.name.clone());
                }
            }
            anyhow::ensure!(refused.is_empty(), "incompatible with the registry: {}", refused.join(", "));
            Ok(())
        }
    }
}
