//! The service kit: what every HTTP service of the shop shares and the outbox pattern itself
//! does not need. The pattern is the `outbox` crate; this is the plumbing around it.
//!
//! - [`service`]: the runner of a service that owns a PostgreSQL database and consumes Kafka
//!   (connect, migrate, consume, serve, drain).
//! - [`http`]: the server with its limits and timeouts, problem+json errors, extractors that
//!   answer with them, and the OpenAPI route.
//! - [`health`]: liveness and readiness, with required and informing checks run side by side.
//! - [`telemetry`]: `tracing` logs and the Prometheus `/metrics`.
//! - [`config`]: the services' settings from the environment; [`relay_mode`]: how a relay
//!   reads its outboxes (`RELAY_MODE`).
//! - [`shutdown`]: SIGTERM and Ctrl-C as a cancellation token.

pub mod config;
pub mod health;
pub mod http;
pub mod relay_mode;
pub mod service;
pub mod shutdown;
pub mod telemetry;

/// Why a service could not start. One enum for every binary: startup either works or tells
/// the operator which dependency was missing.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("configuration: {0}")]
    Config(#[from] config::ConfigError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// A store this kit does not know (invoice-service's MongoDB).
    #[error("{name}: {source}")]
    Store {
        name: &'static str,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl StartupError {
    /// `error` from the store called `name`.
    pub fn store(
        name: &'static str,
        error: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Store {
            name,
            source: Box::new(error),
        }
    }
}
