//! The services' configuration from environment variables, with defaults that match the
//! local stack. The helpers that read one variable are the `outbox` crate's, re-exported here
//! so that a service reads all its settings one way.

use std::{
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use outbox::{kafka::KafkaConfig, AfterInsert, Writer};
use secrecy::SecretString;

pub use outbox::config::{millis, secret, string, var, ConfigError};

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
}
