//! outbox-processor: the standalone relay between the services' outbox tables and Kafka.
//!
//! The relay itself is the `outbox` crate's ([`outbox::relay`]: claim, publish, mark, and why
//! that keeps every aggregate's events in order). This service runs it for every database
//! named in `OUTBOX_DATABASES`, with one producer for the process, and serves what an
//! operator needs over HTTP. A service can run the same relay for its own outbox in-process
//! instead (order-service with `RELAY_EMBEDDED=true`); docs/design.md compares the two.
//!
//! # Layout
//! - [`startup`]: one producer, one relay per source database, one HTTP port.
//! - [`status`]: the status page a person reads at `/`, and `/status.json`.
//! - [`admin`]: parked events, retry and skip (bearer token), over [`outbox::relay::admin`].
//! - [`routes`]: port 8080 put together, with the health routes (and `/metrics`).
//! - [`config`]; [`state`]: what the handlers share.

pub mod admin;
pub mod config;
pub mod routes;
pub mod startup;
pub mod state;
pub mod status;
