//! outbox-processor: the relay between the services' outbox tables and Kafka.
//!
//! One process serves every database named in `OUTBOX_DATABASES`; for each it runs a
//! [`relay::Relay`] loop that claims unpublished rows, publishes them, and marks them
//! published only after the broker acknowledged them. Read [`relay`] for the design and
//! why it keeps every aggregate's events in order.
//!
//! # Layout
//! - [`relay`]: claim, publish, mark (the heart of the pattern's delivery side).
//! - [`broker`]: the seam where a row leaves for the broker, and whose fault a failure is.
//! - [`outage`]: a broker that is away pauses publishing instead of parking events.
//! - [`wake`]: when a claim loop claims next: at once, while events flow, or on a NOTIFY.
//! - [`status`]: the status page a person reads at `/`, and `/status.json`.
//! - [`admin`]: parked events, retry and skip (bearer token).
//! - [`routes`]: port 8080 put together, with the health routes (and `/metrics` from `shared`).
//! - [`verify`]: the whole-system checker behind `outbox-verify` (no event lost, none applied twice).
//! - [`startup`], [`config`]; [`state`]: what the handlers share.

pub mod admin;
pub mod broker;
pub mod config;
pub mod outage;
pub mod relay;
pub mod routes;
pub mod startup;
pub mod state;
pub mod status;
pub mod verify;
pub mod wake;
