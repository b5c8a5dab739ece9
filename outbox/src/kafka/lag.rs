//! Consumer lag: how many messages of its topics a consumer group has not committed yet.
//!
//! The number an operator watches to see whether consumers keep up, read the way
//! `kafka-consumer-groups --describe` reads it: the group's committed offset and the end of
//! each partition. Reading it does not join the group, so it never triggers a rebalance.

use std::time::Duration;

use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    error::KafkaError,
    types::RDKafkaErrorCode,
    ClientConfig, Offset, TopicPartitionList,
};
use serde::Serialize;

use super::KafkaConfig;

/// One partition's lag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// The group's committed offset; `None` before its first commit (then it lags by all
    /// the partition holds).
    pub committed: Option<i64>,
    /// The offset the next message will get.
    pub end: i64,
    pub lag: i64,
}

/// A group's lag over its topics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupLag {
    pub group: String,
    pub total: i64,
    pub partitions: Vec<PartitionLag>,
}

/// Reads one group's lag; keeps its connection to the broker between reads.
pub struct LagProbe {
    consumer: BaseConsumer,
    group: String,
    topics: Vec<String>,
}

impl LagProbe {
    /// A probe of the consumer named `name` (as in [`super::ConsumerSettings::name`]) over
    /// `topics`.
    pub fn new(kafka: &KafkaConfig, name: &str, topics: Vec<String>) -> Result<Self, KafkaError> {
        let group = kafka.group_id(name);
        // No subscribe, no assign: the group id only names whose offsets to fetch.
        let consumer = ClientConfig::new()
            .set("bootstrap.servers", &kafka.brokers)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .create()?;
        Ok(Self {
            consumer,
            group,
            topics,
        })
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    pub fn topics(&self) -> &[String] {
        &self.topics
    }

    /// Blocks for the broker's answers, each bounded by `timeout`; call it off the async
    /// runtime (`spawn_blocking`).
    pub fn read(&self, timeout: Duration) -> Result<GroupLag, KafkaError> {
        // Serves the client's queue of events and errors, which nothing else reads.
        let _ = self.consumer.poll(Duration::ZERO);
        let mut wanted = TopicPartitionList::new();
        for topic in &self.topics {
            let metadata = self.consumer.fetch_metadata(Some(topic), timeout)?;
            for t in metadata.topics() {
                // A topic that is missing (or misnamed) is an error, not a lag of zero.
                if let Some(error) = t.error() {
                    return Err(KafkaError::MetadataFetch(error.into()));
                }
                if t.partitions().is_empty() {
                    return Err(KafkaError::MetadataFetch(
                        RDKafkaErrorCode::UnknownTopicOrPartition,
                    ));
                }
                for p in t.partitions() {
                    wanted.add_partition(t.name(), p.id());
                }
            }
        }
        let committed = self.consumer.committed_offsets(wanted, timeout)?;
        let mut partitions = Vec::new();
        for element in committed.elements() {
            let (low, end) =
                self.consumer
                    .fetch_watermarks(element.topic(), element.partition(), timeout)?;
            let committed = match element.offset() {
                Offset::Offset(offset) => Some(offset),
                _ => None,
            };
            partitions.push(PartitionLag {
                topic: element.topic().to_owned(),
                partition: element.partition(),
                committed,
                end,
                lag: (end - committed.unwrap_or(low).max(low)).max(0),
            });
        }
        Ok(GroupLag {
            group: self.group.clone(),
            total: partitions.iter().map(|p| p.lag).sum(),
            partitions,
        })
    }
}
