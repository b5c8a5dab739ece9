//! Configuration from environment variables, with defaults that match the local stack.
//!
//! Every setting has a default so `cargo run -p order-service` works on a laptop with the
//! local stack up; production overrides them through the environment (12-factor style).

use std::{
    fmt::Display,
    net::{IpAddr, Ipv4Addr},
    str::FromStr,
    time::Duration,
};

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
pub fn millis(name: &str, default: Duration) -> Result<Duration, ConfigError> {
    let default_ms = u64::try_from(default.as_millis()).unwrap_or(u64::MAX);
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

/// Where a service listens and the limits its HTTP server enforces (see
/// [`crate::http::Server`]).
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// `BIND_ADDRESS`: 127.0.0.1 by default, so the unauthenticated APIs are not on every
    /// interface of a laptop; containers set `0.0.0.0` explicitly.
    pub bind: IpAddr,
    /// `PORT`; 0 picks a free port (tests).
    pub port: u16,
    /// `HTTP_HEADER_READ_TIMEOUT_MS`: how long a connection may take to send a request's
    /// headers, counted from when the server is ready for the request: a new connection, or a
    /// kept-alive one after its last answer. An idle or trickling connection is closed then.
    pub header_read_timeout: Duration,
    /// `HTTP_REQUEST_TIMEOUT_MS`: the longest a request may take from its headers to its answer,
    /// its body included (a trickled body is answered 408).
    pub request_timeout: Duration,
    /// `HTTP_BODY_LIMIT_BYTES`: the largest request body (413 above it). Every body these APIs
    /// take is small; a low limit bounds what a rejected request costs.
    pub body_limit: usize,
}

impl HttpConfig {
    pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
    pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

    /// The defaults on 127.0.0.1:`port`.
    pub fn local(port: u16) -> Self {
        Self {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port,
            header_read_timeout: Self::DEFAULT_HEADER_READ_TIMEOUT,
            request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
            body_limit: Self::DEFAULT_BODY_LIMIT,
        }
    }

    pub fn from_env(default_port: u16) -> Result<Self, ConfigError> {
        let d = Self::local(default_port);
        let config = Self {
            bind: var("BIND_ADDRESS", d.bind)?,
            port: var("PORT", d.port)?,
            header_read_timeout: millis("HTTP_HEADER_READ_TIMEOUT_MS", d.header_read_timeout)?,
            request_timeout: millis("HTTP_REQUEST_TIMEOUT_MS", d.request_timeout)?,
            body_limit: var("HTTP_BODY_LIMIT_BYTES", d.body_limit)?,
        };
        for (name, value) in [
            ("HTTP_HEADER_READ_TIMEOUT_MS", config.header_read_timeout),
            ("HTTP_REQUEST_TIMEOUT_MS", config.request_timeout),
        ] {
            if value.is_zero() {
                return Err(ConfigError {
                    name: name.into(),
                    value: "0".into(),
                    reason: "must be at least 1".into(),
                });
            }
        }
        Ok(config)
    }
}

/// Settings of a service that owns a PostgreSQL database and talks to Kafka (order-service,
/// inventory-service).
#[derive(Debug, Clone)]
pub struct PostgresServiceConfig {
    pub http: HttpConfig,
    pub database_url: SecretString,
    pub database_max_connections: u32,
    pub kafka: KafkaConfig,
}

impl PostgresServiceConfig {
    /// The HTTP settings, `DATABASE_URL`, `DATABASE_MAX_CONNECTIONS` and the Kafka settings,
    /// with the local stack's values as defaults.
    pub fn from_env(default_port: u16, default_database: &str) -> Result<Self, ConfigError> {
        Ok(Self {
            http: HttpConfig::from_env(default_port)?,
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
    fn services_listen_on_loopback_unless_told_otherwise() {
        // The test command sets no BIND_ADDRESS; containers set 0.0.0.0 themselves.
        assert_eq!(std::env::var("BIND_ADDRESS").ok(), None);
        let http = HttpConfig::from_env(9000).unwrap();
        assert!(http.bind.is_loopback(), "{}", http.bind);
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
