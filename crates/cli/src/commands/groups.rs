//! `eventline groups` and `eventline groups describe GROUP`: the consumer groups Eventline knows,
//! their state and members, and per partition the committed offset, the end offset and the lag.
//!
//! Groups come from the database's offset store (transactional consumers such as the projector),
//! from `--group`, and from the broker's ListGroups. A group's offsets are read from the database
//! when it has offsets there, else from Kafka's committed offsets. Its state and members (with
//! their assignments) always come from the broker's DescribeGroups ([`membership`]); a broker that
//! does not answer gets a line saying so, and the offsets are shown all the same.

mod assignment;
pub mod membership;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::Context;
use clap::{Args, Subcommand};
use eventline_common::catalog::Catalog;
use eventline_common::config::Section;
use eventline_common::db::{Database, DatabaseSettings};
use eventline_common::kafka::connection::{check_connection, CONNECT_TIMEOUT};
use eventline_common::kafka::consumer::{group_lag, OffsetSource, OffsetStore, PartitionLag};
use eventline_common::kafka::KafkaSettings;
use rdkafka::consumer::BaseConsumer;
use serde::{Deserialize, Serialize};

pub use self::assignment::TopicPartitions;
use self::membership::{BrokerGroup, GroupMember, DEAD_GROUP, DESCRIBE_GROUPS_TIMEOUT};
use super::publish::OutputFormat;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct GroupsArgs {
    #[command(subcommand)]
    pub command: Option<GroupsCommand>,
    /// Also show this group (repeatable), e.g. one whose offsets are in a database this command
    /// does not read.
    #[arg(long = "group")]
    pub groups: Vec<String>,
    /// `text` (default) or `json` for scripts.
    #[arg(long, default_value = "text", global = true)]
    pub output: OutputFormat,
}

#[derive(Debug, Subcommand)]
pub enum GroupsCommand {
    /// The group's state and members (with their partitions), and per partition its committed
    /// offset, the end offset and the lag.
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

/// What the broker says about a group's membership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Membership {
    /// The broker's state of the group: `Stable`, `Empty`, `PreparingRebalance`,
    /// `CompletingRebalance` or `Dead`. `None` when the broker does not know the group or did not
    /// answer (`membership_note` says which).
    pub state: Option<String>,
    /// The members with their assignments; `None` only when the broker did not answer.
    pub members: Option<Vec<GroupMember>>,
    /// Why state or members are missing, or what a `Dead` group without members may be.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub membership_note: Option<String>,
}

impl Membership {
    /// `group`'s membership from the broker's answer (its groups, or why there are none).
    fn of(group: &str, answer: &Result<BTreeMap<String, BrokerGroup>, String>) -> Self {
        match answer {
            Ok(groups) => match groups.get(group) {
                Some(described) => Self {
                    state: Some(described.state.clone()),
                    members: Some(described.members.clone()),
                    membership_note: (described.state == "Dead" && described.members.is_empty())
                        .then(|| format!("the broker says `Dead` without members, {DEAD_GROUP}")),
                },
                None => Self {
                    state: None,
                    members: Some(Vec::new()),
                    membership_note: Some(format!(
                        "the broker does not know group `{group}`: no consumer has joined it and no offsets \
                         were committed for it in Kafka"
                    )),
                },
            },
            Err(reason) => Self {
                state: None,
                members: None,
                membership_note: Some(format!("the broker did not answer ListGroups/DescribeGroups: {reason}")),
            },
        }
    }

    /// Whether the broker described the group.
    fn known(&self) -> bool {
        self.state.is_some()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupDescription {
    pub group: String,
    #[serde(flatten)]
    pub membership: Membership,
    pub offsets_from: OffsetsFrom,
    pub partitions: Vec<PartitionLag>,
    pub total_lag: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupSummary {
    pub group: String,
    #[serde(flatten)]
    pub membership: Membership,
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

/// `group`'s state and members (from the broker) and its offsets on `topics` (default: the
/// catalog's topics it has offsets on). Fails when a topic does not exist, or when the group has
/// no offsets anywhere and the broker does not know it either.
pub async fn describe(
    kafka: &KafkaSettings,
    store: Option<&OffsetStore>,
    catalog: &Catalog,
    group: &str,
    topics: &[String],
) -> anyhow::Result<GroupDescription> {
    let membership = Membership::of(group, &broker_groups(kafka, Some(group)).await);
    describe_with(kafka, store, catalog, group, topics, membership).await
}

async fn describe_with(
    kafka: &KafkaSettings,
    store: Option<&OffsetStore>,
    catalog: &Catalog,
    group: &str,
    topics: &[String],
    membership: Membership,
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
    // A group the broker describes is shown even before its first commit.
    if partitions.iter().all(|p| p.committed.is_none()) && !membership.known() {
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
    Ok(GroupDescription { group: group.to_owned(), membership, offsets_from, partitions, total_lag })
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
    let broker = broker_groups(kafka, None).await;
    match &broker {
        Ok(listed) => names.extend(listed.keys().cloned()),
        Err(reason) => notes.push(format!(
            "the broker did not list its consumer groups ({reason}): states and members are unknown, and groups \
             with Kafka offsets only are missing (use --group NAME)"
        )),
    }
    let mut groups = Vec::with_capacity(names.len());
    for group in names {
        let membership = Membership::of(&group, &broker);
        groups.push(match describe_with(kafka, store, catalog, &group, &[], membership.clone()).await {
            Ok(description) => {
                let topics: BTreeSet<String> = description.partitions.iter().map(|p| p.topic.clone()).collect();
                GroupSummary {
                    group,
                    membership,
                    offsets_from: Some(description.offsets_from),
                    topics: topics.into_iter().collect(),
                    total_lag: Some(description.total_lag),
                    error: None,
                }
            }
            Err(error) => GroupSummary {
                group,
                membership,
                offsets_from: None,
                topics: Vec::new(),
                total_lag: None,
                error: Some(format!("{error:#}")),
            },
        });
    }
    Ok(GroupList { groups, notes })
}

async fn stored_groups(store: &OffsetStore) -> anyhow::Result<Vec<String>> {
    store.groups().await.context("cannot list the groups in the offset store")
}

/// The broker's groups, described (`only`: just that one); `Err` says why the broker did not
/// answer.
async fn broker_groups(kafka: &KafkaSettings, only: Option<&str>) -> Result<BTreeMap<String, BrokerGroup>, String> {
    let config = kafka.client_config();
    let only = only.map(str::to_owned);
    let asked = tokio::task::spawn_blocking(move || -> anyhow::Result<BTreeMap<String, BrokerGroup>> {
        let consumer: BaseConsumer = config.create().context("cannot create the Kafka client")?;
        Ok(membership::describe(&consumer, only.as_deref(), DESCRIBE_GROUPS_TIMEOUT)?)
    })
    .await;
    match asked {
        Ok(answer) => answer.map_err(|error| format!("{error:#}")),
        Err(error) => Err(format!("the DescribeGroups task failed: {error}")),
    }
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
    let source = crate::services::config(config_file)?;
    let kafka: KafkaSettings = source.section(Section::Kafka)?;
    check_connection(&kafka, CONNECT_TIMEOUT).await?;
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
    println!("group {}", description.group);
    print_membership(&description.membership);
    println!("offsets from {from}:");
    if description.partitions.is_empty() {
        println!("no committed offsets yet");
    } else {
        println!("{:<24} {:>9} {:>12} {:>12} {:>10}", "topic", "partition", "committed", "end", "lag");
        for p in &description.partitions {
            let committed = p.committed.map_or_else(|| "-".to_owned(), |c| c.to_string());
            println!("{:<24} {:>9} {:>12} {:>12} {:>10}", p.topic, p.partition, committed, p.end, p.lag);
        }
    }
    println!("total lag: {}", description.total_lag);
    Ok(())
}

/// `state: Stable, 1 member`, then a line per member with its partitions.
fn print_membership(membership: &Membership) {
    match (&membership.state, &membership.members) {
        (Some(state), members) => {
            let members = members.as_deref().unwrap_or_default();
            let plural = if members.len() == 1 { "" } else { "s" };
            println!("state: {state}, {} member{plural}", members.len());
            for member in members {
                println!(
                    "  member {} (client {}, host {}): {}",
                    member.member_id,
                    member.client_id,
                    member.host,
                    assignment_text(member)
                );
            }
            if let Some(note) = &membership.membership_note {
                println!("  ({note})");
            }
        }
        (None, Some(_)) => println!("state: none, no members ({})", note(membership)),
        (None, None) => println!("state and members: unknown ({})", note(membership)),
    }
}

fn note(membership: &Membership) -> &str {
    membership.membership_note.as_deref().unwrap_or_default()
}

/// `orders 0,1; customers 2`, or why there is none.
fn assignment_text(member: &GroupMember) -> String {
    if let Some(error) = &member.assignment_error {
        return format!("assignment unreadable: {error}");
    }
    if member.assignment.is_empty() {
        return "no partitions assigned".to_owned();
    }
    let topics: Vec<String> = member
        .assignment
        .iter()
        .map(|t| {
            let partitions: Vec<String> = t.partitions.iter().map(ToString::to_string).collect();
            format!("{} {}", t.topic, partitions.join(","))
        })
        .collect();
    topics.join("; ")
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
    println!("{:<32} {:<20} {:>7} {:<9} {:>10}  topics", "group", "state", "members", "offsets", "total lag");
    for (name, group) in by_group {
        let state = match (&group.membership.state, &group.membership.members) {
            (Some(state), _) => state.as_str(),
            (None, Some(_)) => "(no group)",
            (None, None) => "(no answer)",
        };
        let members = group.membership.members.as_ref().map_or_else(|| "-".to_owned(), |m| m.len().to_string());
        match &group.error {
            Some(error) => println!("{name:<32} {state:<20} {members:>7} {:<9} {:>10}  ({error})", "-", "-"),
            None => {
                let from = match group.offsets_from {
                    Some(OffsetsFrom::Database) => "database",
                    _ => "kafka",
                };
                let lag = group.total_lag.map_or_else(|| "-".to_owned(), |l| l.to_string());
                println!("{name:<32} {state:<20} {members:>7} {from:<9} {lag:>10}  {}", group.topics.join(", "));
            }
        }
    }
    for note in &list.notes {
        println!("note: {note}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(assignment: Vec<TopicPartitions>, assignment_error: Option<String>) -> GroupMember {
        GroupMember {
            member_id: "m-1".into(),
            client_id: "svc".into(),
            host: "/10.0.0.7".into(),
            assignment,
            assignment_error,
        }
    }

    #[test]
    fn membership_says_what_the_broker_said_or_why_it_said_nothing() {
        let stable = BrokerGroup { state: "Stable".into(), members: vec![member(Vec::new(), None)] };
        let answer = Ok(BTreeMap::from([("g".to_owned(), stable.clone())]));
        let described = Membership::of("g", &answer);
        assert_eq!(
            (described.state.as_deref(), described.members, described.membership_note),
            (Some("Stable"), Some(stable.members), None)
        );
        let dead = BrokerGroup { state: "Dead".into(), members: Vec::new() };
        let dead = Membership::of("g", &Ok(BTreeMap::from([("g".to_owned(), dead)])));
        assert_eq!((dead.state.as_deref(), dead.members.as_deref()), (Some("Dead"), Some(&[][..])));
        assert!(dead.membership_note.unwrap_or_default().contains("new consumer protocol (KIP-848"));
        let unknown = Membership::of("other", &answer);
        assert_eq!((unknown.state, unknown.members), (None, Some(Vec::new())));
        assert!(unknown.membership_note.unwrap_or_default().starts_with("the broker does not know group `other`"));
        let silent = Membership::of("g", &Err("Local: Timed out".into()));
        assert_eq!((silent.state, silent.members), (None, None));
        assert_eq!(
            silent.membership_note.as_deref(),
            Some("the broker did not answer ListGroups/DescribeGroups: Local: Timed out")
        );
    }

    #[test]
    fn assignments_print_per_topic_or_say_why_not() {
        let two = vec![
            TopicPartitions { topic: "orders".into(), partitions: vec![0, 1] },
            TopicPartitions { topic: "refunds".into(), partitions: vec![2] },
        ];
        assert_eq!(assignment_text(&member(two, None)), "orders 0,1; refunds 2");
        assert_eq!(assignment_text(&member(Vec::new(), None)), "no partitions assigned");
        assert_eq!(assignment_text(&member(Vec::new(), Some("bad".into()))), "assignment unreadable: bad");
    }
}
