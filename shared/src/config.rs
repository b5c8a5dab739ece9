//! Configuration from environment variables, with defaults that match the local stack.
//!
//! Every setting has a default so `cargo run -p order-service` works on a laptop with the
//! local stack up; production overrides them through the environment (12-factor style).

use std::{fmt::Display, str::FromStr, time::Duration};

use secrecy::SecretString;

#[derive(Debug, thiserror::Error)]
#[error("environment variable {name}={value:?} is invalid: {reason}")]
pub struct ConfigError {
    pub name: String,
    pub value: String,
    pub reason: String,
}

/// Reads `name` and parses it, or returns `default` when it is unset or empty.
pub fn var<T>(name: &str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: Display,
{
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => {
            value.trim().parse().map_err(|e: T::Err| ConfigError {
                name: name.to_owned(),
                value,
                reason: e.to_string(),
            })
        }
        _ => Ok(default),
    }
}

/// A string setting (no parsing needed).
pub fn string(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// A setting that may hold a password (database URLs): it never shows up in logs or `Debug`.
pub fn secret(name: &str, default: &str) -> SecretString {
    SecretString::from(string(name, default))
}

/// A duration given in milliseconds, e.g. `RELAY_POLL_INTERVAL_MS=250`.
pub fn millis(name: &str, default_ms: u64) -> Result<Duration, ConfigError> {
    var(name, default_ms).map(Duration::from_millis)
}

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

    /// The topic an aggregate type's events go to. Same default as Debezium's Outbox Event
    /// Router (`outbox.event.${routedByValue}`), so Debezium can replace our relay.
    pub fn topic_for(&self, aggregate_type: &str) -> String {
        format!("{}outbox.event.{aggregate_type}", self.topic_prefix)
    }

    /// Where a consumer group parks messages it can never process.
    pub fn dead_letter_topic(&self, group_id: &str) -> String {
        format!("{}{group_id}.dlq", self.topic_prefix)
    }
}

/// Settings of a service that owns a PostgreSQL database and talks to Kafka (order-service,
/// inventory-service).
#[derive(Debug, Clone)]
pub struct PostgresServiceConfig {
    pub port: u16,
    pub database_url: SecretString,
    pub database_max_connections: u32,
    pub kafka: KafkaConfig,
}

impl PostgresServiceConfig {
    /// `PORT`, `DATABASE_URL`, `DATABASE_MAX_CONNECTIONS` and the Kafka settings, with the
    /// local stack's values as defaults.
    pub fn from_env(default_port: u16, default_database: &str) -> Result<Self, ConfigError> {
        Ok(Self {
            port: var("PORT", default_port)?,
            database_url: secret(
                "DATABASE_URL",
                &format!("postgres://postgres@127.0.0.1:5432/{default_database}"),
            ),
            database_max_connections: var("DATABASE_MAX_CONNECTIONS", 10)?,
            kafka: KafkaConfig::from_env()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_follow_debezium_naming_and_prefix() {
        let k = KafkaConfig {
            brokers: "x".into(),
            topic_prefix: "t1.".into(),
            partitions: 1,
            assignment: Assignment::Group,
            fetch_wait_ms: DEFAULT_FETCH_WAIT_MS,
        };
        assert_eq!(k.topic_for("order"), "t1.outbox.event.order");
        assert_eq!(
            k.dead_letter_topic("inventory-service"),
            "t1.inventory-service.dlq"
        );
    }

    #[test]
    fn invalid_values_are_reported_with_their_name() {
        std::env::set_var("SHARED_CONFIG_TEST_PORT", "nine");
        let err = var::<u16>("SHARED_CONFIG_TEST_PORT", 1).unwrap_err();
        assert_eq!(err.name, "SHARED_CONFIG_TEST_PORT");
        assert!(err.to_string().contains("nine"));
        std::env::set_var("SHARED_CONFIG_TEST_PORT", "");
        assert_eq!(var::<u16>("SHARED_CONFIG_TEST_PORT", 7).unwrap(), 7);
    }
}
