//! # outbox: the transactional outbox pattern on PostgreSQL
//!
//! A service that changes its database and then tells a broker about it has a **dual write**:
//! the commit can succeed and the publish fail (or the process die between the two), and the
//! rest of the system never hears of a change that happened. Publishing first is no better: an
//! event for a change that then rolls back. This crate removes the second write from the
//! request. Read its parts in the order an event meets them:
//!
//! 1. **An event** is a type that implements [`DomainEvent`]: its `type`, its aggregate, and the
//!    aggregate's id, which becomes the message key so that one aggregate's events stay in order.
//! 2. **The writer** ([`Writer::write_in_tx`]) inserts the event into the `outbox` table inside
//!    the caller's transaction, next to the business change, so both commit or neither does.
//!    [`Writer::commit`] commits and wakes the relay. The table ([`db::MIGRATOR`]) is the one
//!    Debezium's Outbox Event Router reads, so Debezium can replace the relay without a schema
//!    change; for Debezium alone, the writer can also delete each row right after its insert
//!    ([`AfterInsert::Remove`]).
//! 3. **The relay** ([`relay::Relay`]) claims unpublished rows, publishes them through a
//!    [`relay::Broker`], and marks them published only after the broker acknowledged them: at
//!    least once, in order per aggregate, with several instances at once (row locks, a lease),
//!    through broker outages (it pauses) and poison events (it parks them, and
//!    [`relay::admin`] retries or skips them). [`relay::Relay::start`] runs it in whatever
//!    process calls it: a relay process of its own (the shop's `outbox-processor`) or the
//!    service that writes the events (order-service with `RELAY_EMBEDDED=true`), the same
//!    code either way. `examples/axum_handler.rs` shows the whole producing side, relay
//!    included, in 80 lines.
//! 4. **Topics** are named by aggregate type as Debezium names them ([`topics::TopicNames`]).
//! 5. **A consumer** gets each event at least once. Its [`handler::EventHandler`] applies the
//!    event and records its id in the **inbox** ([`inbox::record`]) in one transaction, so a
//!    redelivered event is recognised ([`inbox::Recorded::Duplicate`]) and not applied twice.
//!    The consumer loop for Kafka (feature `kafka`, on by default: [`kafka::run_consumer`])
//!    commits an offset only after its message was handled, and dead-letters what can never be;
//!    the one for NATS JetStream (feature `nats`) acknowledges the same way.
//!
//! The rest is support: [`envelope`] (what a consumer reads out of a message), [`backoff`],
//! [`config`] (settings from the environment), [`db`] (pools and migrations) and [`trace`]
//! (a W3C trace context that follows an event from request to consumer).
//!
//! ## Features
//! - `kafka` (default): the Kafka publisher, the relay's Kafka broker and the consumer loop,
//!   on rdkafka.
//! - `nats`: NATS JetStream instead or as well: the relay's `nats::NatsBroker` (with the
//!   broker's de-duplication by event id) and a consumer loop for the same handlers.
//! - `openapi`: OpenAPI schemas (utoipa) for the relay's status types.
//!
//! The crate has no web framework and no application types: the shop in this repository
//! (`order-service`, `inventory-service`, `invoice-service`, `outbox-processor`) is its demo.

pub mod backoff;
pub mod config;
pub mod db;
pub mod envelope;
mod event;
pub mod handler;
pub mod inbox;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "nats")]
pub mod nats;
pub mod relay;
pub mod topics;
pub mod trace;
pub mod writer;

pub use event::DomainEvent;
pub use writer::{AfterInsert, Writer};
