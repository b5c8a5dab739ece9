//! The Kafka settings of the relay and of every consumer, and the librdkafka client settings
//! they make: a producer that loses and reorders nothing, and a
//! consumer that commits only what was handled.

use rdkafka::{error::KafkaError, producer::FutureProducer, ClientConfig};

use crate::topics::TopicNames;

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
    /// is, and costs more CPU the shorter it is (docs/local-broker.md).
    pub fetch_wait_ms: u32,
    /// librdkafka's own debug contexts (e.g. `cgrp` for group membership), for diagnosis.
    pub debug: Option<String>,
}

impl Default for KafkaConfig {
    /// The local stack's broker, no prefix, three partitions, a consumer group.
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            topic_prefix: String::new(),
            partitions: 3,
            assignment: Assignment::Group,
            fetch_wait_ms: DEFAULT_FETCH_WAIT_MS,
            debug: None,
        }
    }
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
    /// docs/local-broker.md). Never run two instances this way.
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

/// Producer settings for publishing events: nothing lost, nothing reordered.
pub fn producer_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &kafka.brokers)
        // Idempotence: broker-side dedup of producer retries, and order kept per partition
        // even when a send is retried. It implies acks=all; we say so anyway.
        .set("enable.idempotence", "true")
        .set("acks", "all")
        // Give up on one send after this long; the relay then records the failure and retries
        // the row later instead of holding its batch forever.
        .set("message.timeout.ms", "10000")
        .set("linger.ms", "5")
        // The Java client's partitioner (murmur2 of the key; a keyless message goes anywhere),
        // not librdkafka's default (crc32). Debezium and every Java producer partition so, and
        // a key must land on the same partition whichever relay published it: switching
        // relays would otherwise move most aggregates to another partition, where their next
        // events could overtake the ones still queued on the old one.
        .set("partitioner", "murmur2_random");
    config
}

pub fn producer(kafka: &KafkaConfig) -> Result<FutureProducer, KafkaError> {
    producer_config(kafka).create()
}

/// How long a silent group member keeps its partitions: the time a crashed instance's
/// partitions wait before they move to the others. 6 s is the least Apache Kafka accepts by
/// default (`group.min.session.timeout.ms`).
pub const SESSION_TIMEOUT_MS: u32 = 6000;

/// Consumer settings of every service: manual commits after the handler, short waits.
pub fn consumer_config(kafka: &KafkaConfig, group_id: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    if let Some(debug) = &kafka.debug {
        config.set("debug", debug);
    }
    config
        .set("bootstrap.servers", &kafka.brokers)
        .set("group.id", group_id)
        // An offset is *stored* by hand, only after the handler's transaction committed, and
        // the stored offsets are committed in the background every second (and on close).
        // One broker write per partition per second instead of one per message; a crash
        // loses at most a second of commits, which means redeliveries the inbox absorbs.
        .set("enable.auto.offset.store", "false")
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        // A new group starts from the beginning, so no event published before it joined is lost.
        .set("auto.offset.reset", "earliest")
        // How long the broker may hold a fetch when there is nothing to read. Events hop
        // through three consumers on their way, so on a broker that answers late, each
        // wait adds up end to end (see `KafkaConfig::fetch_wait_ms`).
        .set("fetch.wait.max.ms", kafka.fetch_wait_ms.to_string())
        // A consumer that crashes never says goodbye: the group waits for its session to
        // expire (and, on some brokers, for the rebalance timeout, which is
        // max.poll.interval.ms) before its partitions move on. Keep both short so a crash
        // stalls its partitions for seconds, not minutes. The consumer loop polls all the
        // time (a partition that is behind is paused, not waited for), so only a hand-over
        // waiting on a handler call longer than max.poll.interval.ms takes an instance out of
        // the group; it rejoins, and the inbox absorbs its redelivered message.
        .set("session.timeout.ms", SESSION_TIMEOUT_MS.to_string())
        .set("heartbeat.interval.ms", "1500")
        .set("max.poll.interval.ms", "20000");
    config
}
