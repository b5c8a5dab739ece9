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
//!    code either way. [`relay::Relays`] is the front a process writes: one broker, one
//!    relay per database, started and stopped together (on Kafka:
//!    `kafka.relays(settings)?.database("app", &url)?.start(&shutdown)`).
//!    `examples/axum_handler.rs` shows the whole producing side, relay included, in 80 lines.
//! 4. **Topics** are named by aggregate type as Debezium names them ([`topics::TopicNames`]).
//! 5. **A consumer** gets each event at least once. Its [`handler::EventHandler`] applies the
//!    event and records its id in the **inbox** ([`inbox::record`]) in one transaction, so a
//!    redelivered event is recognised ([`inbox::Recorded::Duplicate`]) and not applied twice.
//!    The consumer core ([`consume`]) retries, dead-letters what can never be handled, and
//!    says when a message may be acknowledged; the broker adapters run it: Kafka (feature
//!    `kafka`, on by default: [`kafka::run_consumer`]) commits an offset only after its message
//!    was handled, NATS JetStream (feature `nats`) acknowledges the same way.
//!
//! # Example
//! An event, and a handler's transaction that writes it beside the business change. This
//! runs as a doctest against the local PostgreSQL (`TEST_DATABASE_URL`); the lines that make
//! its database are hidden.
//!
//! ```
//! use outbox::{DomainEvent, Writer};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct UserSignedUp {
//!     user_id: uuid::Uuid,
//!     email: String,
//! }
//!
//! impl DomainEvent for UserSignedUp {
//!     const TYPE: &'static str = "UserSignedUp";
//!     const AGGREGATE_TYPE: &'static str = "user"; // to the topic outbox.event.user
//!     fn aggregate_id(&self) -> String {
//!         self.user_id.to_string()
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), sqlx::Error> {
//! # let (url, db) = testkit::fresh_outbox_database().await;
//! # sqlx::query("create table users (id uuid primary key, email text)").execute(&db).await?;
//! let event = UserSignedUp { user_id: uuid::Uuid::now_v7(), email: "a@b.c".into() };
//! let writer = Writer::default(); // keeps the row for the relay
//! let mut tx = db.begin().await?;
//! sqlx::query("insert into users (id, email) values ($1, $2)")
//!     .bind(event.user_id)
//!     .bind(&event.email)
//!     .execute(&mut *tx)
//!     .await?;
//! let id = writer.write_in_tx(&mut tx, &event, None).await?;
//! writer.commit(tx, &db).await?; // both rows, or neither; then the relay is woken
//!
//! let pending: i64 = sqlx::query_scalar(
//!     "select count(*) from outbox where id = $1 and published_at is null",
//! )
//! .bind(id)
//! .fetch_one(&db)
//! .await?;
//! assert_eq!(pending, 1); // the relay publishes it, at least once, in order per user
//! # db.close().await;
//! # testkit::drop_database(&url).await;
//! # Ok(())
//! # }
//! ```
//!
//! The relay and a consumer are wired in `examples/axum_handler.rs` and in the shop's
//! services.
//!
//! The rest is support: [`envelope`] (what a consumer reads out of a message), [`backoff`],
//! [`config`] (settings that cannot work; the crate reads no environment variable: the
//! process that embeds it fills its settings), [`db`] (pools and migrations) and [`trace`]
//! (a W3C trace context that follows an event from request to consumer).
//!
//! ## Features
//! - `kafka` (default): the Kafka producer, the relay's Kafka broker and the consumer loop,
//!   on rdkafka.
//! - `nats`: NATS JetStream instead or as well: the relay's `nats::NatsBroker` (with the
//!   broker's de-duplication by event id) and a consumer loop for the same handlers.
//! - `wal`: `wal`, the outbox's committed inserts read from PostgreSQL's write-ahead log
//!   (logical replication, `pgoutput`), with the slot's bookkeeping: the groundwork of a relay
//!   that tails the WAL instead of polling.
//! - `openapi`: OpenAPI schemas (utoipa) for the relay's status types.
//!
//! The crate has no web framework and no application types: the shop in this repository
//! (`order-service`, `inventory-service`, `invoice-service`, `outbox-processor`) is its demo.

pub mod backoff;
pub mod config;
pub mod consume;
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
#[cfg(feature = "wal")]
pub mod wal;
mod writer;

pub use event::DomainEvent;
pub use writer::{wake_relay, AfterInsert, Writer, WAKE_CHANNEL};
