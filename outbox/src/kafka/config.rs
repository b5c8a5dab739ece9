//! The Kafka settings of the relay and of every consumer, from the environment.

use crate::{
    config::{string, var, ConfigError},
    topics::TopicNames,
};

/// Kafka settings every service needs.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `host:port[,host:port]`.
    pub brokers: String,
    /// Prepended to every topic name. Empty in the stack; tests use a unique prefix so that
    /// they can share one broker without seeing each other's events.
    pub topic_prefix: String,
    /// Partitions for the topics we create (the local broker does not auto-create topics).
    pub partitions: i32,
    /// How consumers get their partitions.
    pub assignment: Assignment,
    /// The longest a consumer's fetch may wait at the broker for data (`fetch.wait.max.ms`).
    /// Apache Kafka answers as soon as data arrives, so there it only bounds idle fetches;
    /// a broker that polls its storage until the wait is over answers later the longer it
    /// is, and costs more CPU the shorter it is (README, "The local broker").
    pub fetch_wait_ms: u32,
}

/// See [`KafkaConfig::fetch_wait_ms`]; chosen by measurement on the local broker.
pub const DEFAULT_FETCH_WAIT_MS: u32 = 50;

/// How a consumer gets its partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Assignment {
    /// A consumer group: instances of a service share the partitions, and a crashed
    /// instance's partitions move to the others after its session times out. The default.
    #[default]
    Group,
    /// One instance takes every partition itself and commits its offsets under the group id.
    /// No rebalances, so a restart resumes at once; for a broker whose group coordinator
    /// cannot be trusted (tansu 0.6 never handed a killed member's partitions to the others:
    /// the README's notes on the local broker). Never run two instances this way.
    Manual,
}

impl std::str::FromStr for Assignment {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "group" => Ok(Self::Group),
            "manual" => Ok(Self::Manual),
            other => Err(format!("{other:?} is neither \"group\" nor \"manual\"")),
        }
    }
}

impl KafkaConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            brokers: string("KAFKA_BROKERS", "127.0.0.1:9092"),
            topic_prefix: string("KAFKA_TOPIC_PREFIX", ""),
            partitions: var("KAFKA_TOPIC_PARTITIONS", 3)?,
            assignment: var("KAFKA_CONSUMER_ASSIGNMENT", Assignment::Group)?,
            fetch_wait_ms: var("KAFKA_FETCH_WAIT_MS", DEFAULT_FETCH_WAIT_MS)?,
        })
    }

    /// How topics are named, with this configuration's prefix.
    pub fn topics(&self) -> TopicNames {
        TopicNames::new(&self.topic_prefix)
    }

    /// The topic an aggregate type's events go to (see [`TopicNames::topic_for`]).
    pub fn topic_for(&self, aggregate_type: &str) -> String {
        self.topics().topic_for(aggregate_type)
    }

    /// The consumer group of the consumer named `name`: prefixed like the topics, so tests
    /// that share a broker under their own prefixes never share a group.
    pub fn group_id(&self, name: &str) -> String {
        format!("{}{name}", self.topic_prefix)
    }

    /// Where a consumer group parks messages it can never process.
    pub fn dead_letter_topic(&self, group_id: &str) -> String {
        self.topics().dead_letter_topic(group_id)
    }
}
