//! outbox-processor: the relay between the services' outbox tables and Kafka.
//!
//! One process serves every database named in `OUTBOX_DATABASES`; for each it runs a
//! [`relay::Relay`] loop that claims unpublished rows, publishes them, and marks them
//! published only after the broker acknowledged them. Read [`relay`] for the design and
//! why it keeps every aggregate's events in order.
//!
//! # Layout
//! - [`relay`]: claim, publish, mark (the heart of the pattern's delivery side).
//! - [`routes`]: `/health` and `/metrics` on port 8080.
//! - [`startup`], [`config`].

pub mod config;
pub mod relay;
pub mod routes;
pub mod startup;
