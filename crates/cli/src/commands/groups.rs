//! `eventline groups` and `eventline groups describe GROUP`: the consumer groups Eventline knows
//! and, per partition, the committed offset, the end offset and the lag.
//!
//! Groups come from the database's offset store (transactional consumers such as the projector),
//! from `--group`, and from the broker's ListGroups when it answers. A group's offsets are read
//! from the database when it has offsets there, else from Kafka's committed offsets. Tansu does
//! not answer DescribeConsumerGroups, so group state and members are reported as unavailable.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use eventline_common::catalog::Catalog;
use eventline_common::config::{ConfigSource, Section};
use eventline_common::db::{Database, DatabaseSettings};
use eventline_common::kafka::consumer::{group_lag, OffsetSource, OffsetStore, PartitionLag};
use eventline_common::kafka::KafkaSettings;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde::{Deserialize, Serialize};

use super::publish::OutputFormat;

/// How long `groups` waits for the broker's ListGroups (Tansu may drop the connection).
const LIST_GROUPS_TIMEOUT: Duration = Duration::from_secs(3);
/// Said wherever state and members would be shown.
pub const NO_STATE_NOTE: &str =
    "state and members: not available (the broker does not answer DescribeConsumerGroups)";

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct GroupsArgs {
    #[command(subcommand)]
    pub command: Option<GroupsCommand>,
    /// Also show this group (repeatable); groups with Kafka-committed offsets only are not always
    /// listed by the broker.
    #[arg(long = "group")]
    pub groups: Vec<String>,
    /// `text` (default) or `json` for scripts.
    #[arg(long, default_value = "text", global = true)]
    pub output: OutputFormat,
}

#[derive(Debug, Subcommand)]
pub enum GroupsCommand {
    /// Per partition: the group's committed offset, the end offset and the lag.
    Describe {
        group: String,
        /// Only these topics (repeatable; default: the catalog's topics the group has offsets on).
        #[arg(long = "topic")]
        topics: Vec<String>,
    },
}

/// Where a group's offsets were read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OffsetsFrom {
    Database,
    Kafka,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupDescription {
    pub group: String,
    pub offsets_from: OffsetsFrom,
    pub partitions: Vec<PartitionLag>,
    pub total_lag: i64,
    /// Always `None` on Tansu (see [`NO_STATE_NOTE`]).
    pub state: Option<String>,
    pub members: Option<Vec<String>>,
    pub note: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupSummary {
    pub group: String,
    pub offsets_from: Option<OffsetsFrom>,
    pub topics: Vec<String>,
    pub total_lag: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupList {
    pub groups: Vec<GroupSummary>,
    /// Lines about what could not be looked up (the broker's list, the database).
    pub notes: Vec<String>,
}

/// `group`'s offsets on `topics` (default: the catalog's topics it has offsets on). Fails when the
/// group has no offsets anywhere, or a topic does not exist.
pub async fn describe(
    kafka: &KafkaSettings,
    store: Option<&OffsetStore>,
    catalog: &Catalog,
    group: &str,
    topics: &[String],
) -> anyhow::Result<GroupDescription> {
    let stored = match store {
        Some(store) => store.list(group).await.unwrap_or_default(),
        None => Vec::new(),
    };
    let (source, offsets_from) = match store {
        Some(store) if !stored.is_empty() => (OffsetSource::Store(store), OffsetsFrom::Database),
        _ => (OffsetSource::Kafka, OffsetsFrom::Kafka),
    };
    let explicit = !topics.is_empty();
    let topics: Vec<String> = if explicit {
        topics.to_vec()
    } else {
        let mut topics: Vec<String> = catalog.topics().iter().map(|t| t.name.clone()).collect();
        for offset in &stored {
            if !topics.contains(&offset.topic) {
                topics.push(offset.topic.clone());
            }
        }
        topics
    };
    let mut partitions = group_lag(kafka, group, &topics, source).await?;
    if partitions.iter().all(|p| p.committed.is_none()) {
        anyhow::bail!(
            "consumer group `{group}` has no offsets on {} (neither in Kafka nor in the database); \
             check the name with `eventline groups`",
            topics.join(", ")
        );
    }
    if !explicit {
        let with_offsets: BTreeSet<String> =
            partitions.iter().filter(|p| p.committed.is_some()).map(|p| p.topic.clone()).collect();
        partitions.retain(|p| with_offsets.contains(&p.topic));
    }
    let total_lag = partitions.iter().map(|p| p.lag).sum();
    Ok(GroupDescription {
        group: group.to_owned(),
        offsets_from,
        partitions,
        total_lag,
        state: None,
        members: None,
        note: NO_STATE_NOTE.to_owned(),
    })
}

/// The groups with offsets in `store`, plus `given`, plus what the broker lists (if it answers).
pub async fn list(
    kafka: &KafkaSettings,
    store: Option<&OffsetStore>,
    catalog: &Catalog,
    given: &[String],
) -> anyhow::Result<GroupList> {
    let mut notes = Vec::new();
    let mut names: BTreeSet<String> = given.iter().cloned().collect();
    if let Some(store) = store {
        match stored_groups(store).await {
            Ok(stored) => names.extend(stored),
            Err(error) => notes.push(format!("the database's stored offsets could not be read: {error:#}")),
        }
    }
    match broker_groups(kafka).await {
        Ok(listed) => names.extend(listed),
        Err(error) => notes.push(format!("the broker did not list its consumer groups ({error:#}); use --group NAME")),
    }
    let mut groups = Vec::with_capacity(names.len());
    for group in names {
        groups.push(match describe(kafka, store, catalog, &group, &[]).await {
            Ok(description) => {
                let topics: BTreeSet<String> = description.partitions.iter().map(|p| p.topic.clone()).collect();
                GroupSummary {
                    group,
                    offsets_from: Some(description.offsets_from),
                    topics: topics.into_iter().collect(),
                    total_lag: Some(description.total_lag),
                    error: None,
                }
            }
            Err(error) => {
                GroupSummary { group, offsets_from: None, topics: Vec::new(), total_lag: None, error: Some(format!("{error:#}")) }
            }
        });
    }
    Ok(GroupList { groups, notes })
}

async fn stored_groups(store: &OffsetStore) -> anyhow::Result<Vec<String>> {
    store.groups().await.context("cannot list the groups in the offset store")
}

async fn broker_groups(kafka: &KafkaSettings) -> anyhow::Result<Vec<String>> {
    let config = kafka.client_config();
    tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<String>> {
        let consumer: BaseConsumer = config.create()?;
        let list = consumer.fetch_group_list(None, LIST_GROUPS_TIMEOUT)?;
        Ok(list.groups().iter().map(|g| g.name().to_owned()).collect())
    })
    .await
    .context("the ListGroups task failed")?
}

/// The offset store of the configured database, or `None` (with the reason) when there is none.
pub async fn open_store(settings: &DatabaseSettings) -> Result<OffsetStore, String> {
    if let Some(path) = missing_sqlite_file(settings) {
        return Err(format!("no database at {path}"));
    }
    let database = Database::connect(settings).await.map_err(|e| e.to_string())?;
    Ok(OffsetStore::new(database))
}

/// The path of the configured SQLite file when it does not exist (nothing can be stored there).
pub fn missing_sqlite_file(settings: &DatabaseSettings) -> Option<String> {
    let path = settings.url.strip_prefix("sqlite://")?;
    let path = path.split('?').next().unwrap_or(path);
    (!Path::new(path).exists()).then(|| path.to_owned())
}

pub async fn run(config_file: Option<&Path>, args: GroupsArgs) -> anyhow::Result<()> {
    let source = ConfigSource::load(config_file)?;
    let kafka: KafkaSettings = source.section(Section::Kafka)?;
    let database: DatabaseSettings = source.section(Section::Database)?;
    let catalog = Catalog::embedded().context("the embedded catalog is invalid")?;
    let (store, db_note) = match open_store(&database).await {
        Ok(store) => (Some(store), None),
        Err(reason) => (None, Some(format!("database offsets not read: {reason}"))),
    };
    match args.command {
        Some(GroupsCommand::Describe { group, topics }) => {
            let description = describe(&kafka, store.as_ref(), &catalog, &group, &topics).await?;
            print_description(&description, args.output)
        }
        None => {
            let mut list = list(&kafka, store.as_ref(), &catalog, &args.groups).await?;
            list.notes.extend(db_note);
            print_list(&list, args.output)
        }
    }
}

fn print_description(description: &GroupDescription, output: OutputFormat) -> anyhow::Result<()> {
    if output == OutputFormat::Json {
        println!("{}", serde_json::to_string_pretty(description)?);
        return Ok(());
    }
    let from = match description.offsets_from {
        OffsetsFrom::Database => "the database",
        OffsetsFrom::Kafka => "Kafka",
    };
    println!("group {} (offsets from {from})", description.group);
    println!("{:<24} {:>9} {:>12} {:>12} {:>10}", "topic", "partition", "committed", "end", "lag");
    for p in &description.partitions {
        let committed = p.committed.map_or_else(|| "-".to_owned(), |c| c.to_string());
        println!("{:<24} {:>9} {:>12} {:>12} {:>10}", p.topic, p.partition, committed, p.end, p.lag);
    }
    println!("total lag: {}", description.total_lag);
    println!("{}", description.note);
    Ok(())
}

fn print_list(list: &GroupList, output: OutputFormat) -> anyhow::Result<()> {
    if output == OutputFormat::Json {
        println!("{}", serde_json::to_string_pretty(list)?);
        return Ok(());
    }
    let mut by_group: BTreeMap<&str, &GroupSummary> = BTreeMap::new();
    for group in &list.groups {
        by_group.insert(&group.group, group);
    }
    println!("{:<32} {:<9} {:>10}  topics", "group", "offsets", "total lag");
    for (name, group) in by_group {
        match &group.error {
            Some(error) => println!("{name:<32} {:<9} {:>10}  ({error})", "-", "-"),
            None => {
                let from = match group.offsets_from {
                    Some(OffsetsFrom::Database) => "database",
                    _ => "kafka",
                };
                let lag = group.total_lag.map_or_else(|| "-".to_owned(), |l| l.to_string());
                println!("{name:<32} {from:<9} {lag:>10}  {}", group.topics.join(", "));
            }
        }
    }
    for note in &list.notes {
        println!("note: {note}");
    }
    println!("{NO_STATE_NOTE}");
    Ok(())
}
