//! Topic administration. Topics are created explicitly, with the partition counts of the
//! catalog (production clusters should not auto-create topics, and the local broker does not).

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use super::KafkaSettings;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot create a Kafka admin client: {0}")]
    Client(#[source] KafkaError),
    #[error("cannot create topic {topic}: {code}")]
    CreateTopic { topic: String, code: RDKafkaErrorCode },
    #[error("Kafka request failed: {0}")]
    Request(#[source] KafkaError),
    #[error("topics {topics:?} were created but had no leader for every partition within {waited:?}")]
    NotReady { topics: Vec<String>, waited: Duration },
}

/// How long [`ensure_topics`] waits for new topics to have a leader for every partition.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A topic to create: name, partition count, replication factor.
#[derive(Debug, Clone)]
pub struct TopicRequest {
    pub name: String,
    pub partitions: i32,
    pub replication: i32,
}

/// Creates the topics that do not exist yet; returns the names it created.
pub async fn ensure_topics(settings: &KafkaSettings, topics: &[TopicRequest]) -> Result<Vec<String>, AdminError> {
    let existing = topic_names(settings).await?;
    let missing: Vec<&TopicRequest> = topics.iter().filter(|t| !existing.contains(&t.name)).collect();
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    let admin: AdminClient<DefaultClientContext> = settings.client_config().create().map_err(AdminError::Client)?;
    let new: Vec<NewTopic<'_>> =
        missing.iter().map(|t| NewTopic::new(&t.name, t.partitions, TopicReplication::Fixed(t.replication))).collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let mut created = Vec::new();
    for result in admin.create_topics(new.iter(), &options).await.map_err(AdminError::Request)? {
        match result {
            Ok(topic) => created.push(topic),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(AdminError::CreateTopic { topic, code }),
        }
    }
    // CreateTopics answers before every broker's metadata knows the new partitions' leaders;
    // a client that reads watermarks or produces at once would get NotLeaderForPartition.
    let waiting: Vec<(String, i32)> = missing.iter().map(|t| (t.name.clone(), t.partitions)).collect();
    wait_for_leaders(settings, waiting).await?;
    Ok(created)
}

/// Waits until the metadata shows each of `topics` with its partition count, and each partition's
/// leader answers for it.
async fn wait_for_leaders(settings: &KafkaSettings, topics: Vec<(String, i32)>) -> Result<(), AdminError> {
    let config = settings.client_config();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config.create().map_err(AdminError::Client)?;
        let started = std::time::Instant::now();
        loop {
            let metadata = consumer.fetch_metadata(None, Duration::from_secs(10)).map_err(AdminError::Request)?;
            let ready = |(name, partitions): &(String, i32)| {
                metadata.topics().iter().any(|t| {
                    t.name() == name
                        && t.error().is_none()
                        && t.partitions().len() == usize::try_from(*partitions).unwrap_or(0)
                        && t.partitions().iter().all(|p| p.error().is_none() && p.leader() >= 0)
                })
            };
            // A leader in the metadata may not serve its partition yet: ListOffsets says when it does.
            let serving = |(name, partitions): &(String, i32)| {
                (0..*partitions).all(|p| consumer.fetch_watermarks(name, p, Duration::from_secs(5)).is_ok())
            };
            if topics.iter().all(ready) && topics.iter().all(serving) {
                return Ok(());
            }
            if started.elapsed() > READY_TIMEOUT {
                let topics = topics.iter().filter(|t| !ready(t)).map(|(name, _)| name.clone()).collect();
                return Err(AdminError::NotReady { topics, waited: READY_TIMEOUT });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .map_err(|_| AdminError::Request(KafkaError::Canceled))?
}

/// Creates the catalog's topics that do not exist yet; returns the names it created.
pub async fn ensure_catalog_topics(
    settings: &KafkaSettings,
    catalog: &crate::catalog::Catalog,
    replication: i32,
) -> Result<Vec<String>, AdminError> {
    let topics: Vec<TopicRequest> = catalog
        .topics()
        .iter()
        .map(|t| TopicRequest { name: t.name.clone(), partitions: t.partitions, replication })
        .collect();
    ensure_topics(settings, &topics).await
}

/// The names of all topics the cluster reports.
pub async fn topic_names(settings: &KafkaSettings) -> Result<Vec<String>, AdminError> {
    let config = settings.client_config();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config.create().map_err(AdminError::Client)?;
        let metadata = consumer.fetch_metadata(None, Duration::from_secs(10)).map_err(AdminError::Request)?;
        Ok(metadata.topics().iter().map(|t| t.name().to_owned()).collect())
    })
    .await
    .map_err(|_| AdminError::Request(KafkaError::Canceled))?
}
