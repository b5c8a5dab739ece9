//! What every service of the transactional outbox example shares.
//!
//! The pattern in one paragraph: a service never writes to its database *and* to Kafka in
//! the same request (the "dual write", where one can succeed and the other fail). It writes
//! its state change and an *outbox* row describing it in **one** database transaction. A
//! relay (`outbox-processor`) later publishes the outbox rows to Kafka, at least once, and
//! consumers make "at least once" harmless by recording each event id in an *inbox* in the
//! same transaction as the change the event causes.
//!
//! # Layout
//! Read the modules in this order to follow an event from birth to its last consumer:
//! - [`events`]: the contract between services — event types and their payloads.
//! - [`outbox`]: writes an event into the caller's open transaction (the producing side).
//! - [`kafka`]: topic names, the producer settings the relay uses, and the consumer loop
//!   that hands each message to a handler, commits offsets only after it succeeded, and
//!   dead-letters what can never succeed.
//! - [`envelope`]: what a consumer gets out of a Kafka message: event id, type, payload.
//! - [`handler`]: what a service implements to react to events, and how it fails.
//! - [`inbox`]: "record or skip" in the caller's transaction (the consuming side).
//! - [`db`]: connection pool and migrations (the outbox and inbox tables live here, once).
//! - [`trace`]: the W3C `traceparent` that follows an order through every service.
//! - [`service`], [`http`], [`health`], [`telemetry`], [`config`], [`shutdown`]: plumbing.
//! - `testing` (feature `testing`): a fresh database per test and raw Kafka helpers.

pub mod config;
pub mod db;
pub mod envelope;
pub mod events;
pub mod handler;
pub mod health;
pub mod http;
pub mod inbox;
pub mod kafka;
pub mod outbox;
pub mod service;
pub mod shutdown;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod trace;

/// Why a service could not start. One enum for every binary: startup either works or
/// tells the operator which dependency was missing.
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
    #[error("mongodb: {0}")]
    Mongo(#[from] mongodb::error::Error),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}
