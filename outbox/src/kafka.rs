//! Kafka as the broker (feature `kafka`, on rdkafka): an adapter around the broker-neutral
//! core. It imports the core and the core never imports it.
//!
//! - **The relay's side:** [`KafkaBroker`] implements [`crate::relay::Broker`] over an
//!   idempotent producer (`acks=all`) that is replaced when the broker stops accepting it
//!   ([`Producer`]), and tells an outage from an event's fault ([`classify`]).
//! - **The consumer's side:** [`run_consumer`] fetches messages and hands each one to a worker
//!   for its partition, which runs it through the consumer core ([`crate::consume`]) and
//!   stores the Kafka offset **only after** the handler's transaction committed (or the
//!   message's dead-letter copy was acknowledged); stored offsets are committed to the broker
//!   every second and when the consumer closes. Partitions are handled concurrently, each
//!   strictly in order, and handed over cleanly on a rebalance ([`Rebalances`]).
//!
//! # Layout
//! `config.rs` (settings, and the producer's and consumer's librdkafka settings),
//! `admin.rs` (topics, reachability), `headers.rs` (the event's headers on a record),
//! `producer.rs`, `broker.rs` (the relay's side), `consumer.rs` (the loop),
//! `worker.rs` (one partition), `dead_letter.rs`, `assignment.rs` (rebalances) and
//! `lag.rs` (a consumer group's lag, for the flow page).

mod admin;
mod assignment;
mod broker;
mod config;
mod consumer;
mod dead_letter;
mod headers;
mod lag;
mod producer;
mod worker;

pub use admin::{ensure_topics, ping};
pub use assignment::Rebalances;
pub use broker::{classify, KafkaBroker};
pub use config::{
    consumer_config, producer, producer_config, Assignment, KafkaConfig, DEFAULT_FETCH_WAIT_MS,
    SESSION_TIMEOUT_MS,
};
pub use consumer::{run_consumer, ConsumerSettings};
pub use headers::{envelope, record_headers};
pub use lag::{GroupLag, LagProbe, PartitionLag};
pub use producer::{breaks_producer, Generation, Producer};
