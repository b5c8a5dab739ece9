//! The services' configuration from environment variables, with defaults that match the
//! local stack (12-factor style: production overrides them through the environment). The
//! `outbox` crate reads no variable itself: [`FromEnv`] fills its settings here, so that a
//! service reads all its settings one way.

use std::{
    fmt::Display,
    net::{IpAddr, Ipv4Addr},
    str::FromStr,
    time::Duration,
};

use outbox::{kafka::KafkaConfig, relay::RelaySettings, AfterInsert, Writer};
use secrecy::SecretString;

pub use outbox::config::ConfigError;

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

/// Settings of the `outbox` crate read from the environment: its defaults, overridden by
/// the variables each field's doc names.
pub trait FromEnv: Sized {
    fn from_env() -> Result<Self, ConfigError>;
}

impl FromEnv for KafkaConfig {
    /// `KAFKA_BROKERS`, `KAFKA_TOPIC_PREFIX`, `KAFKA_TOPIC_PARTITIONS`,
    /// `KAFKA_CONSUMER_ASSIGNMENT`, `KAFKA_FETCH_WAIT_MS`, and `KAFKA_DEBUG` (librdkafka's
    /// debug contexts).
    fn from_env() -> Result<Self, ConfigError> {
        let d = KafkaConfig::default();
        Ok(Self {
            brokers: string("KAFKA_BROKERS", &d.brokers),
            topic_prefix: string("KAFKA_TOPIC_PREFIX", &d.topic_prefix),
            partitions: var("KAFKA_TOPIC_PARTITIONS", d.partitions)?,
            assignment: var("KAFKA_CONSUMER_ASSIGNMENT", d.assignment)?,
            fetch_wait_ms: var("KAFKA_FETCH_WAIT_MS", d.fetch_wait_ms)?,
            debug: std::env::var("KAFKA_DEBUG")
                .ok()
                .filter(|v| !v.trim().is_empty()),
        })
    }
}

impl FromEnv for RelaySettings {
    /// The `RELAY_*` variables, validated ([`RelaySettings::validate`]).
    fn from_env() -> Result<Self, ConfigError> {
        let d = Self::default();
        let settings = Self {
            batch_size: var("RELAY_BATCH_SIZE", d.batch_size)?,
            pipeline: var("RELAY_PIPELINE", d.pipeline)?,
            poll_interval: millis("RELAY_POLL_INTERVAL_MS", d.poll_interval)?,
            notify: var("RELAY_NOTIFY", d.notify)?,
            debounce: millis("RELAY_DEBOUNCE_MS", d.debounce)?,
            busy_poll: millis("RELAY_BUSY_POLL_MS", d.busy_poll)?,
            retry_base: millis("RELAY_RETRY_BASE_MS", d.retry_base)?,
            retry_max: millis("RELAY_RETRY_MAX_MS", d.retry_max)?,
            max_attempts: var("RELAY_MAX_ATTEMPTS", d.max_attempts)?,
            lease: millis("RELAY_LEASE_MS", d.lease)?,
            retention: millis("RELAY_RETENTION_MS", d.retention)?,
            retention_interval: millis("RELAY_RETENTION_INTERVAL_MS", d.retention_interval)?,
            retention_batch: var("RELAY_RETENTION_BATCH", d.retention_batch)?,
        };
        settings.validate()?;
        Ok(settings)
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
    /// `OUTBOX_REMOVE_AFTER_INSERT=true`: the service deletes each outbox row in the
    /// transaction that inserted it, for Debezium, which reads the insert from the WAL
    /// ([`outbox::AfterInsert`]). Our polling relay then finds nothing to publish.
    pub writer: Writer,
}

impl PostgresServiceConfig {
    /// The HTTP settings, `DATABASE_URL`, `DATABASE_MAX_CONNECTIONS`, the Kafka settings and
    /// `OUTBOX_REMOVE_AFTER_INSERT`, with the local stack's values as defaults.
    pub fn from_env(default_port: u16, default_database: &str) -> Result<Self, ConfigError> {
        Ok(Self {
            http: HttpConfig::from_env(default_port)?,
            database_url: secret(
                "DATABASE_URL",
                &format!("postgres://postgres@127.0.0.1:5432/{default_database}"),
            ),
            database_max_connections: var("DATABASE_MAX_CONNECTIONS", 10)?,
            kafka: KafkaConfig::from_env()?,
            writer: Writer::new(if var("OUTBOX_REMOVE_AFTER_INSERT", false)? {
                AfterInsert::Remove
            } else {
                AfterInsert::Keep
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_listen_on_loopback_unless_told_otherwise() {
        // The test command sets no BIND_ADDRESS; containers set 0.0.0.0 themselves.
        assert_eq!(std::env::var("BIND_ADDRESS").ok(), None);
        let http = HttpConfig::from_env(9000).unwrap();
        assert!(http.bind.is_loopback(), "{}", http.bind);
    }

    #[test]
    fn invalid_values_are_reported_with_their_name() {
        std::env::set_var("OUTBOX_CONFIG_TEST_PORT", "nine");
        let err = var::<u16>("OUTBOX_CONFIG_TEST_PORT", 1).unwrap_err();
        assert_eq!(err.name, "OUTBOX_CONFIG_TEST_PORT");
        assert!(err.to_string().contains("nine"));
        std::env::set_var("OUTBOX_CONFIG_TEST_PORT", "");
        assert_eq!(var::<u16>("OUTBOX_CONFIG_TEST_PORT", 7).unwrap(), 7);
    }
}
