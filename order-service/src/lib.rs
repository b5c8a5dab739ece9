//! order-service: where events are born.
//!
//! `POST /orders` writes the order *and* its `OrderPlaced` event into the outbox in one
//! PostgreSQL transaction ([`routes::orders`]), so there is no moment where one exists without
//! the other. It never talks to Kafka on the request path: the relay publishes the event,
//! either `outbox-processor` or, with `RELAY_EMBEDDED=true`, this process ([`relay`]).
//! Its worker ([`consumer`]) reads inventory's answer and confirms or rejects the order,
//! again with the status change, the inbox record and the next event in one transaction.
//!
//! # Layout
//! - [`domain`]: request parsing into valid types; the order and its pricing rules.
//! - [`db`]: the SQL, next to nothing else.
//! - [`routes`]: the HTTP API; [`error`]: how its failures look to a client.
//! - [`consumer`]: the reaction to `StockReserved` / `StockRejected`.
//! - [`relay`]: the relay for this service's own outbox, when it is embedded.
//! - [`startup`] and [`config`]: wiring, used by `main.rs` and by the tests; [`state`]: what
//!   the handlers share.

pub mod config;
pub mod consumer;
pub mod db;
pub mod domain;
pub mod error;
pub mod relay;
pub mod routes;
pub mod startup;
pub mod state;
