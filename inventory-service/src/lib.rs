//! inventory-service: a consumer that is also a producer.
//!
//! It consumes `OrderPlaced`, and in **one** inventory-database transaction records the event
//! in its inbox, reserves the stock (or decides to reject the order) and writes its answer,
//! `StockReserved` or `StockRejected`, to its own outbox. The relay publishes that answer.
//! So the pattern chains: inbox in, outbox out, one transaction, no dual write anywhere.
//!
//! # Layout
//! - [`domain`]: the reservation decision, a pure function.
//! - [`db`]: products, reservations, and the seed catalogue (in the migrations).
//! - [`consumer`]: the `OrderPlaced` handler; [`routes`]: `GET /products`.
//! - [`startup`], [`config`], [`error`]; [`state`]: what the handlers share.

pub mod config;
pub mod consumer;
pub mod db;
pub mod domain;
pub mod error;
pub mod routes;
pub mod startup;
pub mod state;
